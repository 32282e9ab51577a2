// The dashboard's canvas chart: shell, axes, zoom, legend and hover shared by every kind (kinds.js
// and curves.js draw each kind). ael_app/canvas_chart.py joins the files into one module (core.js,
// the kinds, entry.js); Streamlit calls entry.js's default export at every rerun with the element's
// latest data.

// What the user set on a chart (zoom, legend toggles), per page, chart key and view, kept for the
// tab's life: a chart that is unmounted and drawn again (another page and back) keeps them too.
const VIEWS = (window.__aelCanvasViews = window.__aelCanvasViews || new Map());
const GRID = '#e8ecf2', INK = '#2a3f5f', MUTED = '#5f6b7a';
const LEGEND_PX = 280;  // the widest a legend beside its chart gets (canvas_chart.py's CSS says the same)

function el(tag, cls, parent) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

// An array sent as {dtype: "f4" | "f8", b64}: little-endian floats in base64.
function decode(array) {
  const text = atob(array.b64), bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return array.dtype === 'f8' ? new Float64Array(bytes.buffer) : new Float32Array(bytes.buffer);
}

// Round tick values over [lo, hi]: steps of 1, 2 or 5 times a power of ten, about `count` of them.
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return {values: [lo], step: 1};
  const raw = (hi - lo) / Math.max(1, count), power = Math.pow(10, Math.floor(Math.log10(raw)));
  const ratio = raw / power, step = power * (ratio >= 7.5 ? 10 : ratio >= 3.5 ? 5 : ratio >= 1.5 ? 2 : 1);
  // Integer multiples of the step (adding the step to a large value could stop moving it).
  const values = [], first = Math.ceil(lo / step - 1e-9), last = Math.min(first + 1000, Math.floor(hi / step + 1e-9));
  for (let n = first; n <= last; n++) values.push(n === 0 ? 0 : n * step);
  return {values, step};
}

// A tick label: thousands as "12k" (steps), otherwise as many decimals as the tick step needs.
function tickLabel(value, step) {
  if (Math.abs(value) >= 1000 && step >= 1000 && value % 1000 === 0) return (value / 1000) + 'k';
  return value.toFixed(Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9))));
}

function formatValue(value) {
  if (!Number.isFinite(value)) return 'no value';
  return Math.abs(value) >= 1000 ? String(Math.round(value)) : Number(value.toPrecision(4)).toString();
}

// A spread (± one std) to the decimals its value is written with: "73.92 ± 0.08", not "± 0.07602".
function formatSpread(spread, value) {
  if (!Number.isFinite(spread)) return '';
  const digits = Math.max(0, Math.min(6, 3 - Math.floor(Math.log10(Math.abs(value) || 1))));
  return Math.abs(value) >= 1000 ? String(Math.round(spread)) : spread.toFixed(digits);
}

// The index of the element of sorted `xs` nearest to x.
function nearest(xs, x) {
  let lo = 0, hi = xs.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xs[mid] < x) lo = mid; else hi = mid; }
  return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
}

class Chart {
  constructor(parent, key) {
    this.key = key;
    this.root = el('div', 'ael-cv', parent);
    this.root.__ael = this;
    const body = el('div', 'ael-cv-body', this.root);
    this.box = el('div', 'ael-cv-box', body);
    this.canvas = el('canvas', null, this.box);
    this.band = el('div', 'ael-cv-band', this.box);
    this.tip = el('div', 'ael-cv-tip', this.box);
    this.legend = el('div', 'ael-cv-legend', body);
    this.width = 0;
    this.font = getComputedStyle(parent instanceof Element ? parent : document.body).fontFamily || 'sans-serif';
    this.resized = new ResizeObserver(() => { if (this.box.clientWidth !== this.width) this.draw(); });
    this.resized.observe(this.box);
    // Canvas text takes the font as it is when drawn: draw again once the page's web font is in.
    if (document.fonts) document.fonts.ready.then(() => this.draw());
    this.canvas.addEventListener('pointerdown', e => this.pressed(e));
    this.canvas.addEventListener('mousemove', e => { this.mouse = this.position(e); this.showTip(); });
    this.canvas.addEventListener('mouseleave', () => { this.mouse = null; this.tip.style.display = 'none'; });
    this.canvas.addEventListener('dblclick', () => { this.view.x = null; this.view.y = null; this.zoomed(); });
  }

  // The element left the page (Streamlit unmounted it): stop watching its size.
  dispose() {
    this.resized.disconnect();
    this.root.remove();
  }

  // New data from the server: drawn unless it is the data already drawn.
  update(data) {
    if (this.data && data.version === this.data.version) return;
    // The Streamlit key of the element (the key the component is given is new at every mount).
    const holder = this.root.closest('[class*="st-key-"]');
    const key = holder ? [...holder.classList].find(c => c.startsWith('st-key-')).slice(7) : this.key;
    const id = location.pathname + '|' + key + '|' + data.view;
    let view = VIEWS.get(id);
    if (!view) { view = {x: null, y: null, hidden: {}, declared: {}}; VIEWS.set(id, view); }
    // A legend choice holds while its entry is there and declared as before: an entry the page now
    // hides or shows otherwise (a class filter changed) starts from what the page asks, and an entry
    // that left (a run no longer chosen) is forgotten. Entries that stay keep the user's choice.
    const declared = {};
    for (const e of data.entries || []) declared[e.id] = !!e.hidden;
    for (const entryId of Object.keys(view.hidden)) {
      if (view.declared[entryId] !== declared[entryId]) delete view.hidden[entryId];
    }
    view.declared = declared;
    this.view = view;
    this.data = data;
    this.kind = KINDS[data.kind];
    this.kind.prepare(this, data);
    this.drawLegend();
    this.draw();
    // The server built this data for the zoom it names: a zoom kept from before (a page opened
    // again, a server that forgot it) asks for its detail too.
    this.asked = data.zoom === undefined ? null : data.zoom;
    if (data.zoomable) this.askDetail();
  }

  // The zoom changed: draw it, and where the data can be detailed, ask the server for the zoomed
  // range's records (it answers with new data holding them; until then the whole run's are drawn).
  zoomed() {
    this.draw();
    if (this.data.zoomable) this.askDetail();
  }

  askDetail() {
    const wanted = this.view.x ? this.view.x.slice() : null;
    if (!this.setState || JSON.stringify(wanted) === JSON.stringify(this.asked)) return;  // built, or asked
    this.asked = wanted;
    this.setState('zoom', wanted);
  }

  // Entries are known by their id (a class, a bundle, a vector), not by their label, which may
  // name the step shown.
  hidden(entry) {
    const chosen = this.view.hidden[entry.id];
    return chosen === undefined ? !!entry.hidden : chosen;
  }

  drawLegend() {
    const entries = this.data.entries || [];
    this.legend.replaceChildren();
    this.legend.style.display = entries.length ? '' : 'none';
    this.legend.style.maxHeight = this.data.height + 'px';
    entries.forEach(entry => {
      const item = el('div', 'ael-cv-item', this.legend);
      item.classList.toggle('ael-cv-off', this.hidden(entry));
      const swatch = el('span', 'ael-cv-swatch', item);
      swatch.style.background = entry.colour;
      swatch.style.height = entry.bar ? '10px' : Math.max(2, entry.width || 2) + 'px';
      el('span', 'ael-cv-name', item).textContent = entry.name;
      item.title = entry.name + '\nclick: hide or show; double-click: this one alone';
      item.addEventListener('click', () => {
        this.view.hidden[entry.id] = !this.hidden(entry);
        this.drawLegend(); this.draw();
      });
      item.addEventListener('dblclick', () => {
        // The two clicks before it toggled the entry twice: now show it alone, or all when it already was.
        const alone = entries.every(o => this.hidden(o) === (o !== entry));
        entries.forEach(o => { this.view.hidden[o.id] = alone ? false : o !== entry; });
        this.drawLegend(); this.draw();
      });
    });
  }

  // The plot area in CSS pixels, inside the margins the kind asks for.
  area() {
    const m = this.margins;
    return {left: m.left, top: m.top, width: Math.max(10, this.width - m.left - m.right),
            height: Math.max(10, this.height - m.top - m.bottom)};
  }

  draw() {
    if (!this.data) return;
    // The legend goes under the plot when beside it the plot would be narrow.
    const room = this.root.clientWidth;
    if (!room) return;
    const beside = !this.legend.childElementCount || room - Math.min(LEGEND_PX, this.legend.scrollWidth) >= Math.max(360, 0.6 * room);
    this.root.classList.toggle('ael-cv-under', !beside);
    const width = this.box.clientWidth;
    if (!width) return;
    this.width = width;
    this.height = this.data.height;
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.canvas.style.width = width + 'px';
    this.canvas.style.height = this.height + 'px';
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, this.height);
    ctx.font = '12px ' + this.font;
    this.margins = this.kind.margins(this, ctx);
    this.kind.draw(this, ctx, this.area());
    this.root.dataset.drawn = this.data.version;
    this.showTip();  // the values under a still mouse changed
  }

  // A message in the middle of the plot area (nothing to draw).
  message(ctx, area, text) {
    ctx.save(); ctx.fillStyle = MUTED; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
    ctx.fillText(text, area.left + area.width / 2, area.top + area.height / 2); ctx.restore();
  }

  // A value as its axis reads: a share in percent when the data says so.
  valueText(value) {
    return this.data.percent && Number.isFinite(value) ? formatValue(100 * value) + ' %' : formatValue(value);
  }

  // Axis helpers for kinds: ticks and grid of a linear y axis over [lo, hi] in the area (tick
  // labels left out for panels that share the axis of a panel to their left).
  yAxis(ctx, area, lo, hi, {ticks = null, title = '', labels = true} = {}) {
    const y = v => area.top + area.height * (1 - (v - lo) / (hi - lo || 1));
    const percent = !!this.data.percent, scale = percent ? 100 : 1;
    const marks = ticks || niceTicks(lo * scale, hi * scale, Math.max(2, Math.floor(area.height / 45))).values.map(
      (v, _, all) => [v / scale, tickLabel(v, all.length > 1 ? all[1] - all[0] : 1) + (percent ? ' %' : '')]);
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle'; ctx.fillStyle = MUTED; ctx.strokeStyle = GRID; ctx.lineWidth = 1;
    const drawn = [];
    for (const [value, label] of marks) {
      const py = Math.round(y(value)) + 0.5;
      if (py < area.top - 1 || py > area.top + area.height + 1) continue;
      ctx.beginPath(); ctx.moveTo(area.left, py); ctx.lineTo(area.left + area.width, py); ctx.stroke();
      if (labels) ctx.fillText(label, area.left - 6, py);
      drawn.push(label);
    }
    this.yTitle(ctx, area, title);
    return {y, ticks: drawn};
  }

  // A y axis title, upright, at the left edge beside the middle of `area`.
  yTitle(ctx, area, title) {
    if (!title) return;
    ctx.save(); ctx.translate(14, area.top + area.height / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center'; ctx.fillStyle = INK; ctx.fillText(title, 0, 0); ctx.restore();
  }

  // A linear x axis over [lo, hi] (data units) below the area; `at` maps a value to pixels.
  xAxis(ctx, area, lo, hi, at, title, grid = true) {
    const {values, step} = niceTicks(lo, hi, Math.max(2, Math.floor(area.width / 90)));
    ctx.textAlign = 'center'; ctx.textBaseline = 'top'; ctx.fillStyle = MUTED; ctx.strokeStyle = GRID;
    for (const v of values) {
      const px = Math.round(at(v)) + 0.5;
      if (px < area.left - 1 || px > area.left + area.width + 1) continue;
      if (grid) { ctx.beginPath(); ctx.moveTo(px, area.top); ctx.lineTo(px, area.top + area.height); ctx.stroke(); }
      ctx.fillText(tickLabel(v, step), px, area.top + area.height + 5);
    }
    if (title) { ctx.fillStyle = INK; ctx.fillText(title, area.left + area.width / 2, area.top + area.height + 22); }
  }

  // Class names under the area, upright, every one that has room (`count` slots over the area);
  // a class cut by a zoom keeps its name only where its slot is.
  classLabels(ctx, area, names, first, count) {
    const slot = area.width / count, every = Math.max(1, Math.ceil(13 / slot));
    ctx.save(); ctx.font = '11px ' + this.font; ctx.fillStyle = MUTED; ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    // The first and last names may reach half a glyph past the plot; a name cut by a zoom stays cut.
    ctx.beginPath(); ctx.rect(area.left - 8, area.top + area.height, area.width + 16, this.height); ctx.clip();
    for (let i = Math.max(0, Math.floor(first)); i < Math.min(names.length, first + count); i += 1) {
      if (i % every || i + 0.5 < first) continue;
      ctx.save(); ctx.translate(area.left + (i - first + 0.5) * slot, area.top + area.height + 5); ctx.rotate(-Math.PI / 2);
      ctx.fillText(names[i], 0, 0); ctx.restore();
    }
    ctx.restore();
  }

  labelWidth(ctx, labels) {
    let widest = 0;
    ctx.save(); ctx.font = '11px ' + this.font;
    for (const label of labels) widest = Math.max(widest, ctx.measureText(label).width);
    ctx.restore();
    return Math.min(220, Math.ceil(widest));
  }

  position(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  // The tooltip of the point under the mouse, if any.
  showTip() {
    if (!this.data || this.dragging || !this.mouse || !this.margins) { this.tip.style.display = 'none'; return; }
    const [px, py] = this.mouse, area = this.area();
    const text = px >= area.left && px <= area.left + area.width && py >= area.top && py <= area.top + area.height
      ? this.kind.hover(this, area, px, py) : null;
    if (!text) { this.tip.style.display = 'none'; return; }
    this.tip.textContent = text;
    this.tip.style.display = 'block';
    const left = px + 14 + this.tip.offsetWidth > this.width ? px - 14 - this.tip.offsetWidth : px + 14;
    this.tip.style.left = Math.max(0, left) + 'px';
    this.tip.style.top = Math.max(0, py - 10 - this.tip.offsetHeight) + 'px';
  }

  // A drag in the area zooms to the dragged box: x only for a flat drag (or a kind without y zoom),
  // y only for an upright one.
  pressed(event) {
    if (event.button !== 0 || !this.data) return;
    const [x0, y0] = this.position(event), whole = this.area();
    // The rectangle a drag stays in: the plot area, or the panel pressed in (kinds with panels).
    const area = this.kind.dragArea ? this.kind.dragArea(this, whole, x0, y0) : whole;
    if (!area || x0 < area.left || x0 > area.left + area.width || y0 < area.top || y0 > area.top + area.height) return;
    const clamp = (v, lo, size) => Math.min(lo + size, Math.max(lo, v));
    let x1 = x0, y1 = y0;
    const spans = () => [Math.abs(x1 - x0) >= 4, !!this.kind.zoomY && Math.abs(y1 - y0) >= 8];
    this.dragging = true;
    this.tip.style.display = 'none';
    this.canvas.setPointerCapture(event.pointerId);  // the release reaches the chart wherever it happens
    const move = e => {
      [x1, y1] = this.position(e);
      x1 = clamp(x1, area.left, area.width); y1 = clamp(y1, area.top, area.height);
      const [wide, tall] = spans();
      Object.assign(this.band.style, {display: 'block',
        left: (wide ? Math.min(x0, x1) : area.left) + 'px', width: (wide ? Math.abs(x1 - x0) : area.width) + 'px',
        top: (tall ? Math.min(y0, y1) : area.top) + 'px', height: (tall ? Math.abs(y1 - y0) : area.height) + 'px'});
    };
    const up = () => {
      this.canvas.removeEventListener('pointermove', move);
      this.canvas.removeEventListener('pointerup', up);
      this.canvas.removeEventListener('pointercancel', up);
      this.band.style.display = 'none';
      this.dragging = false;
      const [wide, tall] = spans();
      if (!wide && !tall) return;
      const zoomed = this.kind.zoom(this, area, wide ? [Math.min(x0, x1), Math.max(x0, x1)] : null,
                                    tall ? [Math.min(y0, y1), Math.max(y0, y1)] : null);
      const valid = r => Array.isArray(r) && Number.isFinite(r[0]) && Number.isFinite(r[1]) && r[1] > r[0];
      if (valid(zoomed.x)) this.view.x = zoomed.x;
      if (valid(zoomed.y)) this.view.y = zoomed.y;
      this.zoomed();
    };
    this.canvas.addEventListener('pointermove', move);
    this.canvas.addEventListener('pointerup', up);
    this.canvas.addEventListener('pointercancel', up);
    event.preventDefault();
  }

  // What the chart shows, for tests and scripts: its data, the legend as drawn, the view kept.
  snapshot() {
    return {kind: this.data.kind, version: this.data.version, view: {x: this.view.x, y: this.view.y},
            legend: (this.data.entries || []).map(e => [e.name, !this.hidden(e)]), ticks: this.ticks || [],
            rows: this.rows || null};
  }
}
