// The module's entry (last of the joined files): the kinds by name, and the function Streamlit calls.
const KINDS = {lines: LINES, heatmap: HEATMAP, bars: BARS, groups: GROUPS, curves: CURVES};

export default function ({data, parentElement, key, setStateValue}) {
  if (!data) return undefined;  // canvas_chart.preload(): the module is loaded, nothing to draw
  let root = parentElement.querySelector(':scope > .ael-cv');
  if (!root) root = new Chart(parentElement, key).root;
  const chart = root.__ael, call = (chart.calls = (chart.calls || 0) + 1);
  chart.setState = setStateValue;
  chart.update(data);
  // Streamlit may run the cleanup of a call a newer one replaced: only the latest call's unmounts.
  return () => { if (chart.calls === call) chart.dispose(); };
}
