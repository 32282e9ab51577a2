// Curves over steps in a grid of panels on shared axes (the Compare page): each series has its own
// steps (runs evaluate and log at their own steps), a legend entry (a run, a method) shared across
// panels, and optionally a band of ± its spread (the standard deviation over seeds) with the seed
// count. One panel without a title is a plain line chart (mIoU over evaluations).

const PANEL_TITLE_PX = 18, PANEL_GAP_X = 18, PANEL_GAP_Y = 34;

// A series as sent (the whole run, or the detail of a zoomed range).
function curvePart(part) {
  return {xs: decode(part.x), ys: decode(part.y), spread: part.spread ? decode(part.spread) : null,
          count: part.count ? decode(part.count) : null, reduced: part.reduced, first_step: part.first_step,
          range: part.range || null};
}

const CURVES = {
  zoomY: true,
  prepare(chart, data) {
    chart.curves = data.series.map(s => ({entry: s.entry, panel: s.panel, coarse: curvePart(s),
                                          detail: s.detail ? curvePart(s.detail) : null}));
    chart.ticks = [];
  },
  margins: (chart) => ({left: 58, right: 12, top: chart.data.panels.length > 1 ? 2 : 10, bottom: 42}),
  // The part of a curve to draw: the detail of the zoomed range once the server sent it.
  part: (chart, curve) => zoomedPart(curve.coarse, curve.detail, chart.view.x),
  visible(chart) {
    return chart.curves.filter(curve => !chart.hidden(chart.data.entries[curve.entry]));
  },
  // The plot rectangle of each panel, row by row.
  layout(chart, area) {
    const count = chart.data.panels.length, columns = Math.max(1, Math.min(chart.data.columns, count));
    const rows = Math.ceil(count / columns), titled = count > 1 ? PANEL_TITLE_PX : 0;
    const width = (area.width - PANEL_GAP_X * (columns - 1)) / columns;
    const height = (area.height - PANEL_GAP_Y * (rows - 1)) / rows;
    return chart.data.panels.map((panel, p) => {
      const column = p % columns, row = Math.floor(p / columns);
      return {left: area.left + column * (width + PANEL_GAP_X), top: area.top + row * (height + PANEL_GAP_Y) + titled,
              width, height: Math.max(10, height - titled), column, row,
              bottom: p + columns >= count};  // no panel under it: the steps' title goes here
    });
  },
  // The shared x and y ranges: the view's zoom, else every shown point (bands included); values fit
  // the points of the zoomed steps. Charts with markers leave room for the first and last.
  domain(chart, shown) {
    let x0 = Infinity, x1 = -Infinity, lo = Infinity, hi = -Infinity;
    for (const curve of shown) {
      const {xs, ys, spread} = this.part(chart, curve), [from, to] = stepWindow(xs, chart.view.x);
      if (xs.length) { x0 = Math.min(x0, xs[0]); x1 = Math.max(x1, xs[xs.length - 1]); }
      for (let i = from; i < to; i++) {
        const v = ys[i], s = spread && Number.isFinite(spread[i]) ? spread[i] : 0;
        if (!Number.isFinite(v)) continue;
        lo = Math.min(lo, v - s); hi = Math.max(hi, v + s);
      }
    }
    if (!(x1 >= x0)) { x0 = 0; x1 = 1; }
    const margin = x1 > x0 ? (chart.data.markers ? 0.03 * (x1 - x0) : 0) : 1;
    if (!(hi >= lo)) { lo = 0; hi = 1; }
    const pad = (hi - lo || Math.abs(hi) || 1) * 0.05;
    return {x: chart.view.x || [x0 - margin, x1 + margin], y: chart.view.y || [lo - pad, hi + pad]};
  },
  draw(chart, ctx, area) {
    const data = chart.data, shown = this.visible(chart), {x, y} = this.domain(chart, shown);
    const plots = this.layout(chart, area);
    if (!shown.length) chart.message(ctx, area, 'Nothing shown: click the legend');
    chart.ticks = [];
    plots.forEach((plot, p) => {
      const at = v => plot.left + ((v - x[0]) / (x[1] - x[0])) * plot.width;
      const axis = chart.yAxis(ctx, plot, y[0], y[1], {labels: plot.column === 0});
      if (p === 0) chart.ticks = axis.ticks;
      chart.xAxis(ctx, plot, x[0], x[1], at, plot.bottom ? data.x_title : '');
      plot.at = at; plot.y = axis.y;
      if (data.panels[p].title) {
        ctx.save(); ctx.fillStyle = INK; ctx.textAlign = 'center'; ctx.textBaseline = 'bottom';
        ctx.fillText(data.panels[p].title, plot.left + plot.width / 2, plot.top - 3, plot.width); ctx.restore();
      }
      ctx.save();
      ctx.beginPath(); ctx.rect(plot.left, plot.top, plot.width, plot.height); ctx.clip();
      ctx.lineJoin = 'round';
      for (const curve of shown) if (curve.panel === p) this.drawCurve(chart, ctx, curve, plot);
      ctx.restore();
    });
    chart.yTitle(ctx, area, data.y_title);  // once, beside the whole grid
    chart.scale = {plots, x, yRange: y};
  },
  drawCurve(chart, ctx, curve, plot) {
    const entry = chart.data.entries[curve.entry], {xs, ys, spread} = this.part(chart, curve), k = xs.length;
    ctx.strokeStyle = entry.colour; ctx.fillStyle = entry.colour;
    // Runs of finite points, each drawn (and banded) on its own.
    const runs = [];
    for (let i = 0, start = -1; i <= k; i++) {
      const finite = i < k && Number.isFinite(ys[i]);
      if (finite && start < 0) start = i;
      if (!finite && start >= 0) { runs.push([start, i]); start = -1; }
    }
    if (spread) {
      ctx.globalAlpha = 0.2;
      for (const [a, b] of runs) {
        ctx.beginPath();
        for (let i = a; i < b; i++) ctx.lineTo(plot.at(xs[i]), plot.y(ys[i] + (spread[i] || 0)));
        for (let i = b - 1; i >= a; i--) ctx.lineTo(plot.at(xs[i]), plot.y(ys[i] - (spread[i] || 0)));
        ctx.closePath(); ctx.fill();
      }
      ctx.globalAlpha = 1;
    }
    ctx.lineWidth = entry.width || 2;
    for (const [a, b] of runs) {
      ctx.beginPath();
      for (let i = a; i < b; i++) ctx.lineTo(plot.at(xs[i]), plot.y(ys[i]));
      ctx.stroke();
    }
    // Markers, or a dot where a point has no neighbour to join (a run that logged once so far).
    for (const [a, b] of runs) for (let i = a; i < b; i++) {
      if (!chart.data.markers && b - a > 1) break;
      ctx.beginPath(); ctx.arc(plot.at(xs[i]), plot.y(ys[i]), chart.data.markers ? 3 : 2, 0, 2 * Math.PI); ctx.fill();
    }
  },
  // The panel whose plot holds pixel (px, py), or null.
  plotAt(chart, px, py) {
    const plots = chart.scale ? chart.scale.plots : [];
    const p = plots.findIndex(r => px >= r.left && px <= r.left + r.width && py >= r.top && py <= r.top + r.height);
    return p < 0 ? null : [p, plots[p]];
  },
  hover(chart, area, px, py) {
    const found = this.plotAt(chart, px, py);
    if (!found) return null;
    const [p, plot] = found, {x} = chart.scale, step = x[0] + ((px - plot.left) / plot.width) * (x[1] - x[0]);
    let best = null, distance = 20;
    for (const curve of this.visible(chart)) {
      if (curve.panel !== p) continue;
      const part = this.part(chart, curve);
      if (!part.xs.length) continue;
      const i = nearest(part.xs, step), v = part.ys[i];
      if (!Number.isFinite(v)) continue;
      const d = Math.hypot(plot.at(part.xs[i]) - px, plot.y(v) - py);
      if (d < distance) { distance = d; best = [curve, part, i]; }
    }
    if (!best) return null;
    const [curve, part, i] = best, entry = chart.data.entries[curve.entry];
    // A spread is sent where there are seeds to spread over (two or more).
    const spread = part.spread && Number.isFinite(part.spread[i]) ? ` ± ${formatSpread(part.spread[i], part.ys[i])}` : '';
    const seeds = part.count ? ` (${part.count[i]} seed${part.count[i] === 1 ? '' : 's'})` : '';
    const when = stepText(part, i);
    const panel = chart.data.panels[p].title ? ` · ${chart.data.panels[p].title}` : '';
    return `${entry.name}: ${chart.valueText(part.ys[i])}${spread}${seeds}, ${when}${panel}`;
  },
  // A drag stays in the panel it starts in (null: pressed between panels).
  dragArea(chart, area, px, py) {
    const found = this.plotAt(chart, px, py);
    return found && found[1];
  },
  // The area given is the panel dragged in; panels share their axes, so its ranges are every panel's.
  zoom: (chart, plot, xs, ys) => zoomLinear(chart, plot, xs, ys),
};
