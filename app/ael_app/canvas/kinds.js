// The kinds of canvas chart (core.js is the shell; curves.js has the Compare page's curves): per-class
// lines over steps, a classes x steps heatmap, rows of per-class bars with their own y scale, and
// grouped bars on a linear or log axis (with whiskers of the spread over seeds).
// Each kind prepares its data once per update, then draws, hovers and zooms in its own units.

// Viridis at nine stops, interpolated to a 256-colour table.
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
                 [92, 200, 99], [170, 220, 50], [253, 231, 37]];
const LUT = (() => {
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (VIRIDIS.length - 1), k = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - k;
    for (let ch = 0; ch < 3; ch++) table[i * 3 + ch] = VIRIDIS[k][ch] + (VIRIDIS[k + 1][ch] - VIRIDIS[k][ch]) * f;
  }
  return table;
})();

// The x zoom of bar kinds, in slots: class c spans [c, c + 1]; all classes are [0, count].
function classWindow(chart, count) {
  const [lo, hi] = chart.view.x || [0, count];
  return {first: lo, count: hi - lo};
}

function zoomClasses(chart, area, xs) {
  const {first, count} = classWindow(chart, chart.data.names.length), slot = area.width / count;
  return xs ? {x: xs.map(px => first + (px - area.left) / slot)} : {};
}

// A series over steps as sent (the whole run, or the detail of a zoomed range): steps, values,
// and whether a point is the mean of a bucket of records.
function series(part, values) {
  return {xs: decode(part.x), values: decode(part[values]), reduced: part.reduced, first_step: part.first_step,
          range: part.range || null};
}

// Indices [from, to) of sorted steps `xs` a zoom to steps `x` shows, with one point either side (lines
// run to the edges): the values the y axis fits. No zoom: all of them.
function stepWindow(xs, x) {
  if (!x || !xs.length) return [0, xs.length];
  let from = 0, to = xs.length;
  while (from < xs.length && xs[from] < x[0]) from++;
  while (to > 0 && xs[to - 1] > x[1]) to--;
  return [Math.max(0, from - 1), Math.min(xs.length, to + 1)];
}

// What to draw of a series over steps: the detail of the zoomed steps `x` once the server sent it
// (it covers them), else the whole run's.
function zoomedPart(coarse, detail, x) {
  return detail && x && detail.range[0] <= x[0] && x[1] <= detail.range[1] ? detail : coarse;
}

// The series a chart draws (zoomedPart of its whole run and detail), kept as chart.source.
function source(chart) {
  chart.source = zoomedPart(chart.coarse, chart.detail, chart.view.x);
  chart.xs = chart.source.xs;
  return chart.source;
}

// The zoom of a drag over `area` on linear axes (chart.scale's x and yRange): pixels to data units.
function zoomLinear(chart, area, xs, ys) {
  if (!chart.scale) return {};
  const {x, yRange} = chart.scale, zoomed = {};
  if (xs) zoomed.x = xs.map(px => x[0] + ((px - area.left) / area.width) * (x[1] - x[0]));
  if (ys) zoomed.y = ys.map(py => yRange[0] + (1 - (py - area.top) / area.height) * (yRange[1] - yRange[0])).reverse();
  return zoomed;
}

const LINES = {
  zoomY: true,
  prepare(chart, data) {
    chart.coarse = series(data, 'y');
    chart.detail = data.detail ? series(data.detail, 'y') : null;
    chart.ticks = [];
  },
  margins: () => ({left: 58, right: 12, top: 10, bottom: 42}),
  visible(chart) {
    const entries = chart.data.entries;
    return chart.data.series.map((s, c) => [s, c]).filter(([s]) => !chart.hidden(entries[s.entry]));
  },
  domain(chart, shown) {
    chart.ys = source(chart).values;
    const xs = chart.xs, k = xs.length, [from, to] = stepWindow(xs, chart.view.x);
    let lo = Infinity, hi = -Infinity;
    for (const [, c] of shown) for (let i = from; i < to; i++) {
      const v = chart.ys[c * k + i];
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!(hi >= lo)) { lo = 0; hi = 1; }
    const pad = (hi - lo || Math.abs(hi) || 1) * 0.05;
    return {x: chart.view.x || [xs[0], xs[k - 1] > xs[0] ? xs[k - 1] : xs[0] + 1], y: chart.view.y || [lo - pad, hi + pad]};
  },
  draw(chart, ctx, area) {
    const shown = this.visible(chart), {x, y} = this.domain(chart, shown), k = chart.xs.length;
    chart.scale = null;
    if (!shown.length) chart.message(ctx, area, 'No class shown: choose classes above, or click the legend');
    const at = v => area.left + ((v - x[0]) / (x[1] - x[0])) * area.width;
    const axis = chart.yAxis(ctx, area, y[0], y[1], {title: chart.data.y_title});
    chart.xAxis(ctx, area, x[0], x[1], at, chart.data.x_title);
    chart.ticks = axis.ticks;
    chart.scale = {at, y: axis.y, x, yRange: y};
    ctx.save();
    ctx.beginPath(); ctx.rect(area.left, area.top, area.width, area.height); ctx.clip();
    ctx.lineJoin = 'round';
    for (const [s, c] of shown.sort((a, b) => a[0].width - b[0].width)) {
      ctx.strokeStyle = s.colour; ctx.globalAlpha = s.alpha; ctx.lineWidth = s.width; ctx.fillStyle = s.colour;
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < k; i++) {
        const v = chart.ys[c * k + i];
        if (!Number.isFinite(v)) { pen = false; continue; }
        const px = at(chart.xs[i]), py = axis.y(v);
        if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        pen = true;
      }
      ctx.stroke();
      if (chart.data.markers) for (let i = 0; i < k; i++) {
        const v = chart.ys[c * k + i];
        if (Number.isFinite(v)) { ctx.beginPath(); ctx.arc(at(chart.xs[i]), axis.y(v), 2.5, 0, 2 * Math.PI); ctx.fill(); }
      }
    }
    ctx.restore();
  },
  hover(chart, area, px, py) {
    if (!chart.scale) return null;
    const {x} = chart.scale, k = chart.xs.length;
    const i = nearest(chart.xs, x[0] + ((px - area.left) / area.width) * (x[1] - x[0]));
    let best = null, distance = 16;
    for (const [, c] of this.visible(chart)) {
      const v = chart.ys[c * k + i];
      if (!Number.isFinite(v)) continue;
      const d = Math.abs(chart.scale.y(v) - py);
      if (d < distance) { distance = d; best = [c, v]; }
    }
    return best && `${chart.data.names[best[0]]}: ${chart.valueText(best[1])}, ${stepText(chart.source, i)}`;
  },
  zoom: (chart, area, xs, ys) => zoomLinear(chart, area, xs, ys),
};

const HEATMAP = {
  zoomY: true,
  prepare(chart, data) {
    chart.coarse = this.image(series(data, 'z'), data);
    chart.detail = data.detail ? this.image(series(data.detail, 'z'), data) : null;
  },
  // The cells of a series as an image, one pixel a cell, in viridis over [zmin, zmax].
  image(part, data) {
    const z = part.values, k = part.xs.length, rows = data.names.length;
    const image = new ImageData(Math.max(1, k), Math.max(1, rows)), span = data.zmax - data.zmin || 1;
    for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) {
      const v = z[r * k + i], o = (r * k + i) * 4;
      if (!Number.isFinite(v)) { image.data[o + 3] = 0; continue; }
      const t = Math.round(Math.min(1, Math.max(0, (v - data.zmin) / span)) * 255) * 3;
      image.data[o] = LUT[t]; image.data[o + 1] = LUT[t + 1]; image.data[o + 2] = LUT[t + 2]; image.data[o + 3] = 255;
    }
    part.image = document.createElement('canvas');
    part.image.width = image.width; part.image.height = image.height;
    part.image.getContext('2d').putImageData(image, 0, 0);
    return part;
  },
  margins: (chart, ctx) => ({left: chart.labelWidth(ctx, chart.data.names) + 12, right: 78, top: 14, bottom: 42}),
  // Cells [i, i + 1] hold a column, centred on its step: steps <-> cell units by interpolating between
  // centres. The x zoom is kept in steps, so it holds when a live run's columns are bucketed anew.
  cellOf(xs, step) {
    const k = xs.length;
    if (k < 2) return 0.5;
    let i = nearest(xs, step);
    if (xs[i] > step) i -= 1;
    i = Math.min(k - 2, Math.max(0, i));
    return i + 0.5 + (step - xs[i]) / (xs[i + 1] - xs[i] || 1);
  },
  stepOf(xs, cell) {
    const k = xs.length;
    if (k < 2) return xs[0] || 0;
    const i = Math.min(k - 2, Math.max(0, Math.floor(cell - 0.5)));
    return xs[i] + (cell - 0.5 - i) * (xs[i + 1] - xs[i]);
  },
  // Columns [c0, c1] and rows [r0, r1] shown, in cell units.
  window(chart) {
    const xs = source(chart).xs, x = chart.view.x;
    const cols = x ? [Math.max(0, this.cellOf(xs, x[0])), Math.min(xs.length, this.cellOf(xs, x[1]))] : [];
    return {cols: cols[1] > cols[0] ? cols : [0, xs.length], rows: chart.view.y || [0, chart.data.names.length]};
  },
  draw(chart, ctx, area) {
    const {cols, rows} = this.window(chart), xs = chart.xs, names = chart.data.names;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(chart.source.image, cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0], area.left, area.top, area.width, area.height);
    const at = step => area.left + ((this.cellOf(xs, step) - cols[0]) / (cols[1] - cols[0])) * area.width;
    chart.xAxis(ctx, area, this.stepOf(xs, cols[0]), this.stepOf(xs, cols[1]), at, chart.data.x_title, false);
    const rowPx = area.height / (rows[1] - rows[0]), every = Math.max(1, Math.ceil(12 / rowPx));
    ctx.save(); ctx.font = '11px ' + chart.font; ctx.fillStyle = MUTED; ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    for (let r = Math.ceil(rows[0]); r < rows[1]; r++) {
      if (r % every) continue;
      const py = area.top + (r + 0.5 - rows[0]) * rowPx;
      if (py > area.top + area.height) break;
      ctx.fillText(names[r], area.left - 5, py);
    }
    ctx.restore();
    this.colourBar(chart, ctx, area);
    chart.scale = {cols, rows};
  },
  colourBar(chart, ctx, area) {
    const {zmin, zmax, colour_title: title} = chart.data, left = area.left + area.width + 14, top = area.top + 18;
    const height = Math.max(20, area.height - 18);
    for (let i = 0; i < height; i++) {
      const t = Math.round((1 - i / Math.max(1, height - 1)) * 255) * 3;
      ctx.fillStyle = `rgb(${LUT[t]},${LUT[t + 1]},${LUT[t + 2]})`;
      ctx.fillRect(left, top + i, 14, 1);
    }
    ctx.fillStyle = MUTED; ctx.textAlign = 'left'; ctx.textBaseline = 'middle';
    const {values, step} = niceTicks(zmin, zmax, 4);
    for (const v of values) ctx.fillText(tickLabel(v, step), left + 19, top + (1 - (v - zmin) / (zmax - zmin || 1)) * (height - 1));
    ctx.fillStyle = INK; ctx.textBaseline = 'top';
    if (title) ctx.fillText(title, left, area.top);
  },
  hover(chart, area, px, py) {
    const {cols, rows} = chart.scale, k = chart.xs.length;
    const i = Math.floor(cols[0] + ((px - area.left) / area.width) * (cols[1] - cols[0]));
    const r = Math.floor(rows[0] + ((py - area.top) / area.height) * (rows[1] - rows[0]));
    if (i < 0 || i >= k || r < 0 || r >= chart.data.names.length) return null;
    return `${chart.data.names[r]}: ${chart.valueText(chart.source.values[r * k + i])}, ${stepText(chart.source, i)}`;
  },
  zoom(chart, area, xs, ys) {
    const {cols, rows} = chart.scale, zoomed = {};
    if (xs) zoomed.x = xs.map(px => this.stepOf(chart.xs, cols[0] + ((px - area.left) / area.width) * (cols[1] - cols[0])));
    if (ys) {  // whole rows, each named
      const [r0, r1] = ys.map(py => rows[0] + ((py - area.top) / area.height) * (rows[1] - rows[0]));
      zoomed.y = [Math.floor(r0), Math.max(Math.floor(r0) + 1, Math.ceil(r1))];
    }
    return zoomed;
  },
};

const TITLE_PX = 20;

const BARS = {
  zoomY: false,
  prepare(chart, data) {
    chart.rows = data.rows.map(row => ({title: row.title, values: Array.from(decode(row.values))}));
    chart.outlined = new Set(data.outlined);
  },
  margins: (chart, ctx) => ({left: 58, right: 12, top: 4, bottom: chart.labelWidth(ctx, chart.data.names) + 16}),
  draw(chart, ctx, area) {
    const names = chart.data.names, {first, count} = classWindow(chart, names.length), slot = area.width / count;
    const band = area.height / Math.max(1, chart.rows.length);
    chart.ticks = [];
    chart.rows.forEach((row, r) => {
      const plot = {left: area.left, width: area.width, top: area.top + r * band + TITLE_PX, height: band - TITLE_PX - 8};
      const finite = row.values.filter(Number.isFinite);
      const lo = Math.min(0, ...finite), hi = Math.max(0, ...finite) * 1.05 || 1;
      const axis = chart.yAxis(ctx, plot, lo, hi);
      chart.ticks.push(axis.ticks);
      ctx.fillStyle = INK; ctx.textAlign = 'center'; ctx.textBaseline = 'bottom';
      ctx.fillText(row.title, plot.left + plot.width / 2, plot.top - 4);
      ctx.save(); ctx.beginPath(); ctx.rect(plot.left, plot.top - 1, plot.width, plot.height + 2); ctx.clip();
      const base = axis.y(0);
      row.values.forEach((v, c) => {
        if (!Number.isFinite(v)) return;
        const left = plot.left + (c - first) * slot + slot * 0.075, top = Math.min(base, axis.y(v));
        ctx.fillStyle = chart.data.colours[c];
        ctx.fillRect(left, top, slot * 0.85, Math.abs(axis.y(v) - base));
        if (chart.outlined.has(c)) {
          ctx.strokeStyle = 'black'; ctx.lineWidth = Math.max(0.5, Math.min(2, slot * 0.12));
          ctx.strokeRect(left, top, slot * 0.85, Math.abs(axis.y(v) - base));
        }
      });
      ctx.restore();
    });
    chart.classLabels(ctx, area, names, first, count);
    chart.scale = {first, count, slot, band};
  },
  hover(chart, area, px, py) {
    const {first, slot, band} = chart.scale, c = Math.floor(first + (px - area.left) / slot);
    const row = chart.rows[Math.floor((py - area.top) / band)];
    if (!row || c < 0 || c >= chart.data.names.length) return null;
    return `${chart.data.names[c]}: ${chart.valueText(row.values[c])} · ${row.title}`;
  },
  zoom: (chart, area, xs) => zoomClasses(chart, area, xs),
};

const GROUPS = {
  zoomY: false,
  prepare(chart, data) {
    chart.rows = data.groups.map((group, g) => ({title: data.entries[g].name, values: Array.from(decode(group.values)),
                                                 zero: group.zero_label,
                                                 errors: group.errors ? Array.from(decode(group.errors)) : null}));
  },
  // Room for the widest tick label (log ticks are given) and the axis title.
  margins: (chart, ctx) => ({left: 30 + (chart.data.ticks ? chart.labelWidth(ctx, chart.data.ticks.map(t => t[1])) : 36),
                             right: 12, top: 10, bottom: chart.labelWidth(ctx, chart.data.names) + 16}),
  draw(chart, ctx, area) {
    const data = chart.data, names = data.names, {first, count} = classWindow(chart, names.length);
    const slot = area.width / count, shown = chart.rows.map((row, g) => [row, g]).filter(([, g]) => !chart.hidden(data.entries[g]));
    const [lo, hi] = data.range, axis = chart.yAxis(ctx, area, lo, hi, {ticks: data.ticks, title: data.y_title});
    if (!shown.length) chart.message(ctx, area, 'Nothing shown: click the legend');
    const level = v => (data.log ? Math.log10(v) : v);
    chart.ticks = axis.ticks;
    chart.zeros = [];  // [class, group, label] of every zero bar drawn
    ctx.save(); ctx.beginPath(); ctx.rect(area.left, 0, area.width, area.top + area.height); ctx.clip();
    const width = (slot * 0.8) / Math.max(1, shown.length), base = data.log ? area.top + area.height : axis.y(Math.max(lo, 0));
    shown.forEach(([row, g], n) => {
      const colour = data.entries[g].colour;
      row.values.forEach((v, c) => {
        if (!Number.isFinite(v)) return;
        const left = area.left + (c - first + 0.1) * slot + n * width;
        const zero = v === 0, end = zero && data.log ? axis.y(level(data.stub)) : axis.y(level(v));
        const top = Math.min(base, end), height = Math.abs(base - end);
        ctx.fillStyle = colour; ctx.globalAlpha = zero ? 0.45 : 1;
        ctx.fillRect(left, top, width * 0.95, height);
        ctx.globalAlpha = 1;
        const error = row.errors && row.errors[c];
        if (error > 0 && !data.log) {  // a whisker: the spread over seeds, both ways
          const mid = left + width * 0.475, cap = Math.min(6, width * 0.3), y0 = axis.y(v - error), y1 = axis.y(v + error);
          ctx.strokeStyle = INK; ctx.lineWidth = 1.2;
          ctx.beginPath(); ctx.moveTo(mid, y0); ctx.lineTo(mid, y1);
          ctx.moveTo(mid - cap, y0); ctx.lineTo(mid + cap, y0); ctx.moveTo(mid - cap, y1); ctx.lineTo(mid + cap, y1);
          ctx.stroke();
        }
        if (!zero) return;
        chart.zeros.push([c, row.title, row.zero]);
        ctx.save();  // cross-hatched, inside its own bar: a zero share, not a small one
        ctx.beginPath(); ctx.rect(left, top, width * 0.95, height); ctx.clip();
        ctx.strokeStyle = colour; ctx.lineWidth = 1;
        ctx.beginPath();
        for (let d = -height; d < width; d += 4) { ctx.moveTo(left + d, base); ctx.lineTo(left + d + height, top); }
        ctx.stroke();
        ctx.restore();
        if (!row.zero) return;
        ctx.save(); ctx.translate(left + width * 0.475, top - 3); ctx.rotate(-Math.PI / 2);
        ctx.font = '10px ' + chart.font; ctx.fillStyle = INK; ctx.textAlign = 'left'; ctx.textBaseline = 'middle';
        ctx.fillText(row.zero, 0, 0); ctx.restore();
      });
    });
    ctx.restore();
    chart.classLabels(ctx, area, names, first, count);
    chart.scale = {first, slot, width, shown};
  },
  hover(chart, area, px) {
    const {first, slot, width, shown} = chart.scale, position = first + (px - area.left) / slot;
    const c = Math.floor(position), n = Math.floor(((position - c - 0.1) * slot) / width);
    if (c < 0 || c >= chart.data.names.length || n < 0 || n >= shown.length) return null;
    const [row] = shown[n], value = row.values[c], error = row.errors ? row.errors[c] : NaN;
    const scale = chart.data.percent ? 100 : 1, unit = chart.data.percent ? ' %' : '';
    const spread = Number.isFinite(error) ? ` ± ${formatSpread(scale * error, scale * value)}${unit}` : '';
    return `${chart.data.names[c]}: ${chart.valueText(value)}${spread} · ${row.title}`;
  },
  zoom: (chart, area, xs) => zoomClasses(chart, area, xs),
};

// Where point i of a series (its steps `xs`, whether `reduced` to bucket means, its `first_step`)
// comes from: one record, or the mean of the records of a bucket of steps.
function stepText(part, i) {
  const {xs, reduced, first_step: first} = part;
  if (!reduced) return `at step ${xs[i]}`;
  return `mean of steps ${i ? xs[i - 1] + 1 : first}–${xs[i]}`;
}
