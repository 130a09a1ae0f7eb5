// Small SVG charts drawn by hand: a time-series line chart and a bar chart. No library: the
// page must work offline from the binary alone.
const SVG = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// niceTicks returns about n round tick values covering [lo, hi].
export function niceTicks(lo, hi, n = 4) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
  const ticks = [];
  // From the step at or below lo up to the first at or above hi, so every value is inside.
  for (let v = Math.floor(lo / step) * step; ticks.length < 20; v += step) {
    ticks.push(+v.toPrecision(12));
    if (v >= hi - step * 1e-9) break;
  }
  return ticks;
}

export function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

function clock(ms, span) {
  const d = new Date(ms);
  const p = x => String(x).padStart(2, '0');
  const hm = p(d.getHours()) + ':' + p(d.getMinutes());
  if (span < 10 * 60e3) return hm + ':' + p(d.getSeconds());
  if (span > 36 * 3600e3) return (d.getMonth() + 1) + '/' + d.getDate() + ' ' + hm;
  return hm;
}

const W = 480, H = 180, L = 44, R = 10, T = 10, B = 22;

function frame(title, cls) {
  const fig = document.createElement('figure');
  fig.className = 'chart ' + (cls || '');
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  fig.append(cap);
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  fig.append(svg);
  return { fig, svg };
}

function empty(svg) {
  svg.append(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'no data yet'));
}

// lineChart draws series [{name, points: [[timeMs, value], ...]}] over time. Each series is
// one <path class="series"> whose data-points attribute is its number of points.
export function lineChart(title, series, opts = {}) {
  const { fig, svg } = frame(title, opts.cls);
  // The axis spans the data, not the whole selected range, so a device seen for a few
  // minutes is not a sliver at the right edge; opts.from only drops older points.
  if (opts.from !== undefined) series = series.map(s => ({ ...s, points: s.points.filter(p => p[0] >= opts.from) }));
  const all = series.flatMap(s => s.points).filter(p => Number.isFinite(p[1]));
  if (all.length === 0) { empty(svg); return fig; }
  let x0 = Math.min(...all.map(p => p[0])), x1 = Math.max(...all.map(p => p[0]));
  if (x1 <= x0) { x0 -= 30e3; x1 += 30e3; }
  // opts.limits [{name, value}] are horizontal threshold lines; the axis includes them.
  const limits = (opts.limits || []).filter(l => Number.isFinite(l.value));
  let y0 = Math.min(0, ...all.map(p => p[1])), y1 = Math.max(...all.map(p => p[1]), ...limits.map(l => l.value));
  const yt = niceTicks(y0, y1 > y0 ? y1 : y0 + 1);
  y0 = yt[0]; y1 = yt[yt.length - 1];
  const sx = t => L + (t - x0) / (x1 - x0) * (W - L - R);
  const sy = v => H - B - (v - y0) / (y1 - y0 || 1) * (H - T - B);
  for (const v of yt) {
    svg.append(svgEl('line', { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: 'grid' }));
    svg.append(svgEl('text', { x: L - 4, y: sy(v) + 4, 'text-anchor': 'end', class: 'tick' }, fmt(v)));
  }
  for (let i = 0; i <= 3; i++) {
    const t = x0 + (x1 - x0) * i / 3;
    svg.append(svgEl('text', { x: sx(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle', class: 'tick' }, clock(t, x1 - x0)));
  }
  for (const l of limits) {
    const line = svgEl('line', { x1: L, x2: W - R, y1: sy(l.value), y2: sy(l.value), class: 'limit', 'data-value': l.value });
    line.append(svgEl('title', {}, l.name + ': ' + fmt(l.value)));
    svg.append(line);
    svg.append(svgEl('text', { x: W - R - 2, y: sy(l.value) - 3, 'text-anchor': 'end', class: 'tick limit-label' }, l.name));
  }
  series.forEach((s, i) => {
    const pts = s.points.filter(p => Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
    if (pts.length === 0) return;
    const d = pts.map((p, j) => (j ? 'L' : 'M') + sx(p[0]).toFixed(1) + ' ' + sy(p[1]).toFixed(1)).join(' ');
    const path = svgEl('path', { d, class: 'series s' + i, 'data-points': pts.length, 'data-series': s.name });
    path.append(svgEl('title', {}, s.name));
    svg.append(path);
    if (pts.length <= 2 || opts.dots) {
      for (const p of pts.slice(-400)) {
        svg.append(svgEl('circle', { cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 2, class: 'dot s' + i }));
      }
    }
  });
  if (series.length > 1) {
    const legend = document.createElement('div');
    legend.className = 'legend';
    series.forEach((s, i) => {
      const item = document.createElement('span');
      item.className = 'key s' + i;
      item.textContent = s.name;
      legend.append(item);
    });
    fig.append(legend);
  }
  return fig;
}

// barChart draws one bar per label; each bar is a <rect class="bar"> with data-count.
export function barChart(title, labels, values, opts = {}) {
  const { fig, svg } = frame(title, opts.cls);
  const total = values.reduce((a, b) => a + b, 0);
  if (labels.length === 0 || total === 0) { empty(svg); return fig; }
  const yt = niceTicks(0, Math.max(...values));
  const y1 = yt[yt.length - 1];
  const bw = Math.min((W - L - R) / labels.length, 60);
  const sy = v => H - B - v / y1 * (H - T - B);
  for (const v of yt) {
    svg.append(svgEl('line', { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: 'grid' }));
    svg.append(svgEl('text', { x: L - 4, y: sy(v) + 4, 'text-anchor': 'end', class: 'tick' }, fmt(v)));
  }
  const every = Math.ceil(labels.length / 9);
  labels.forEach((lab, i) => {
    const x = L + i * bw;
    const r = svgEl('rect', { x: (x + 1).toFixed(1), y: sy(values[i]).toFixed(1), width: Math.max(bw - 2, 1).toFixed(1), height: (H - B - sy(values[i])).toFixed(1), class: 'bar', 'data-count': values[i] });
    r.append(svgEl('title', {}, lab + ': ' + values[i]));
    svg.append(r);
    if (i % every === 0) svg.append(svgEl('text', { x: x + bw / 2, y: H - 6, 'text-anchor': 'middle', class: 'tick' }, lab.length > 10 ? lab.slice(0, 9) + '…' : lab));
  });
  return fig;
}
