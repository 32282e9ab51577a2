"""Zoom and legend choices of every chart kept across live refreshes, in the browser.

Streamlit derives a plotly chart's element id from its figure, so a live refresh that brings new
data mounts a new chart: plotly's ``uirevision`` never sees the old one, and a drag-zoom or a
hidden legend entry is lost at the next refresh. A small script in the page (run once per
browser tab) remembers, per chart, what the user changed (the x and y range of a zoom, which
traces a legend click hid) and puts it back on the chart that replaces it.

A chart is known by the page, its Streamlit key and its ``uirevision`` (else the URL's query,
which names the run): a new run or a new key starts from the figure's own view. A remembered y
range is applied only on an axis of the same type (a log toggle starts afresh), and hidden
traces only while the figure declares the same visibilities itself (a class filter the user
changed on the page wins). A double-click on the chart (autoscale) forgets the zoom.
"""

from __future__ import annotations

import streamlit as st

_SCRIPT = """
<script>
(() => {
  if (window.__aelViews) return;  // one keeper per tab: Streamlit reruns do not add more
  const views = new Map();
  window.__aelViews = views;
  const keyOf = gd => {
    const holder = gd.closest('[class*="st-key-"]');
    const cls = holder && Array.from(holder.classList).find(c => c.startsWith('st-key-'));
    return cls ? cls.slice(7) : null;
  };
  const idOf = gd => {
    const key = keyOf(gd);
    if (!key) return null;
    const rev = gd.layout && gd.layout.uirevision;
    return location.pathname + '|' + key + '|' + (rev === undefined || rev === null ? location.search : rev);
  };
  const visibilities = gd => (gd.data || []).map(t => (t.visible === undefined ? true : t.visible));
  const axis = (gd, a) => {
    const ax = gd._fullLayout[a + 'axis'];
    return ax && ax.autorange === false && Array.isArray(ax.range) ? {range: ax.range.slice(), type: ax.type} : null;
  };
  const apply = gd => {
    const view = views.get(gd.__aelId);
    if (!view || !window.Plotly) return;
    const layout = {};
    for (const a of ['x', 'y']) {
      const kept = view[a], ax = gd._fullLayout[a + 'axis'];
      if (!kept || !ax || ax.type !== kept.type) continue;
      if (ax.autorange !== false || ax.range[0] !== kept.range[0] || ax.range[1] !== kept.range[1]) {
        layout[a + 'axis.range'] = kept.range.slice();
        layout[a + 'axis.autorange'] = false;
      }
    }
    const restyle = {indices: [], visible: []};
    if (view.hidden && view.base === gd.__aelBase && view.hidden.length === gd.data.length) {
      const now = visibilities(gd);
      view.hidden.forEach((v, i) => { if (now[i] !== v) { restyle.indices.push(i); restyle.visible.push(v); } });
    }
    if (!Object.keys(layout).length && !restyle.indices.length) return;
    gd.__aelApplying = true;
    let done = Promise.resolve();
    if (restyle.indices.length) done = done.then(() => window.Plotly.restyle(gd, {visible: restyle.visible}, restyle.indices));
    if (Object.keys(layout).length) done = done.then(() => window.Plotly.relayout(gd, layout));
    done.catch(() => {}).finally(() => { gd.__aelApplying = false; });
  };
  const attach = gd => {
    if (gd.__aelId !== undefined || !gd._fullLayout || !gd.on) return;
    gd.__aelId = idOf(gd);
    if (!gd.__aelId) return;
    gd.__aelBase = JSON.stringify(visibilities(gd));  // what the figure itself hides
    gd.on('plotly_relayout', event => {
      if (gd.__aelApplying) return;
      const view = views.get(gd.__aelId) || {x: null, y: null, hidden: null, base: gd.__aelBase};
      for (const a of ['x', 'y']) {
        if (Object.keys(event || {}).some(k => k.startsWith(a + 'axis'))) view[a] = axis(gd, a);
      }
      views.set(gd.__aelId, view);
    });
    gd.on('plotly_restyle', () => {
      if (gd.__aelApplying) return;
      const view = views.get(gd.__aelId) || {x: null, y: null};
      view.hidden = visibilities(gd);
      view.base = gd.__aelBase;
      views.set(gd.__aelId, view);
    });
    // Plotly's double-click goes back to the range the chart was drawn with, which is the kept
    // zoom when the keeper put it back: zoom all the way out instead, and forget the zoom.
    gd.on('plotly_doubleclick', () => {
      const view = views.get(gd.__aelId);
      if (view) { view.x = null; view.y = null; }
      window.Plotly.relayout(gd, {'xaxis.autorange': true, 'yaxis.autorange': true});
    });
    // After every draw (the first one included), put back what the user chose, if it differs.
    gd.on('plotly_afterplot', () => { if (!gd.__aelApplying) apply(gd); });
    setTimeout(() => apply(gd), 0);
  };
  const scan = () => document.querySelectorAll('.js-plotly-plot').forEach(attach);
  new MutationObserver(scan).observe(document.body, {childList: true, subtree: true});
  scan();
})();
</script>
"""


def keep_chart_views() -> None:
    """Put the view keeper in the page (in the sidebar; it draws nothing). Call once per script run."""
    st.sidebar.html(_SCRIPT, unsafe_allow_javascript=True)
