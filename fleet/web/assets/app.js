// The Outpost dashboard: a fleet table and a page per device, read from the controller's JSON
// API with the token the user signs in with. Routing is in the URL fragment (#/, #/drift and
// #/device/ID), so the server serves the same files for everything.
import { lineChart, barChart, fmt } from './chart.js';

const TOKEN_KEY = 'outpost-api-token';
const REFRESH_MS = 2000;
const main = document.getElementById('main');
const statusEl = document.getElementById('status');
const logoutBtn = document.getElementById('logout');
let timer = null;
let generation = 0; // bumped on every navigation, so late answers of an old view are dropped

class AuthError extends Error {}

// api GETs a JSON path with the token in the Authorization header, never in the URL.
async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new AuthError('no token');
  const r = await fetch(path, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store' });
  if (r.status === 401) throw new AuthError('the controller refused the token');
  if (!r.ok) {
    let msg = r.status + ' ' + r.statusText;
    try { msg = (await r.json()).error || msg; } catch { /* not JSON */ }
    throw new Error(path.split('?')[0] + ': ' + msg);
  }
  return r.json();
}

// el builds an element; strings become text nodes, so nothing a device reports is parsed as HTML.
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// list takes an array answer, or the first array inside an object answer.
function list(v) {
  if (Array.isArray(v)) return v;
  if (v && typeof v === 'object') for (const k of Object.keys(v)) if (Array.isArray(v[k])) return v[k];
  return [];
}

function pick(o, ...keys) {
  if (!o) return undefined;
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k];
  return undefined;
}

function modelName(m) {
  if (!m) return '';
  if (typeof m === 'string') return m;
  const n = pick(m, 'name', 'Name');
  return n ? n + '@' + (pick(m, 'version', 'Version') || '') : '';
}

// device normalises one device of /v1/devices or /v1/devices/{id}.
function device(d) {
  // A view without a health object may carry the figures itself.
  const h = pick(d, 'health', 'Health') || d || {};
  return {
    id: String(pick(d, 'id', 'ID', 'device') || ''),
    online: !!pick(d, 'online', 'Online'),
    model: modelName(pick(d, 'model', 'Model')) || modelName(h.model),
    tags: pick(d, 'tags', 'Tags') || null,
    lastSeen: pick(d, 'last_seen', 'LastSeen'),
    stored: pick(d.results || {}, 'stored') ?? pick(d, 'results_received', 'ResultsReceived'),
    update: pick(d, 'update') || h.update,
    agent: pick(d, 'agent_version') || h.agent_version,
    latest: pick(d, 'latest'),
    events1h: pick(d.last_hour || {}, 'events'),
    health: h,
    raw: d,
  };
}

// outcome is a result in short: its label (or event/normal) and score.
function outcome(r) {
  if (!r) return '–';
  return (r.label || (r.event ? 'event' : 'normal')) + ' ' + fmt(r.score);
}

function ago(ts) {
  const t = Date.parse(ts);
  if (!Number.isFinite(t) || t <= 0) return '–';
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 90) return Math.round(s) + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  if (s < 129600) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

function duration(s) {
  if (!(s > 0)) return '–';
  if (s < 120) return Math.round(s) + ' s';
  if (s < 7200) return Math.round(s / 60) + ' min';
  if (s < 172800) return (s / 3600).toFixed(1) + ' h';
  return (s / 86400).toFixed(1) + ' d';
}

function setStatus(text, bad) {
  statusEl.textContent = text;
  statusEl.className = bad ? 'bad' : '';
}

function stop() {
  if (timer) clearTimeout(timer);
  timer = null;
}

// every runs f now and then every ms while the view is current; errors show in the header.
function every(ms, f) {
  const gen = generation;
  const tick = async () => {
    try {
      await f(gen);
      if (gen === generation) setStatus('updated ' + new Date().toLocaleTimeString());
    } catch (e) {
      if (gen !== generation) return;
      if (e instanceof AuthError) { login(e.message); return; }
      setStatus(e.message, true);
    }
    if (gen === generation) timer = setTimeout(tick, ms);
  };
  tick();
}

function login(why) {
  stop();
  generation++;
  sessionStorage.removeItem(TOKEN_KEY);
  logoutBtn.hidden = true;
  setStatus('');
  const form = document.getElementById('login-tpl').content.cloneNode(true);
  main.replaceChildren(form);
  const err = document.getElementById('login-error');
  if (why && why !== 'no token') err.textContent = why;
  document.getElementById('login').addEventListener('submit', async ev => {
    ev.preventDefault();
    const tok = document.getElementById('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, tok);
    try {
      await api('/v1/tags'); // any authenticated read proves the token
      route();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      err.textContent = e instanceof AuthError ? 'The controller refused this token.' : e.message;
    }
  });
  document.getElementById('token').focus();
}

// ---- fleet table ----

// parseTagFilter reads "k=v k2=v2" (spaces or commas) into pairs; malformed words are ignored.
export function parseTagFilter(s) {
  return s.split(/[\s,]+/).filter(Boolean).map(w => w.split('=')).filter(p => p.length === 2 && p[0]).map(([k, v]) => [k, v]);
}

function fleetView(params) {
  const q = el('input', { id: 'f-text', type: 'search', placeholder: 'device, model or tag', value: params.get('q') || '' });
  const online = el('select', { id: 'f-online' },
    el('option', { value: '' }, 'online and offline'), el('option', { value: 'online' }, 'online'), el('option', { value: 'offline' }, 'offline'));
  online.value = params.get('online') || '';
  const model = el('select', { id: 'f-model' }, el('option', { value: '' }, 'every model'));
  const tag = el('input', { id: 'f-tag', type: 'search', placeholder: 'KEY=VALUE', value: params.get('tag') || '' });
  const count = el('span', { id: 'fleet-count' });
  const tbody = el('tbody');
  const table = el('table', { id: 'fleet' },
    el('thead', {}, el('tr', {}, ['Device', 'State', 'Model', 'Latest outcome', 'Events 1h', 'Inferences/s', 'p99 ms', 'Buffered', 'CPU %', 'Temp °C', 'Update', 'Last seen', 'Tags'].map(h => el('th', {}, h)))),
    tbody);
  main.replaceChildren(el('section', { class: 'filters' },
    el('label', {}, 'Search ', q), el('label', {}, 'State ', online), el('label', {}, 'Model ', model), el('label', {}, 'Tags ', tag), count), table);

  let devices = [];
  const keep = () => {
    // The filters live in the fragment so a view can be bookmarked; the token never does.
    const p = new URLSearchParams();
    if (q.value) p.set('q', q.value);
    if (online.value) p.set('online', online.value);
    if (model.value) p.set('model', model.value);
    if (tag.value) p.set('tag', tag.value);
    const h = '#/' + (p.toString() ? '?' + p : '');
    if (location.hash !== h) history.replaceState(null, '', h);
  };
  const draw = () => {
    const text = q.value.trim().toLowerCase();
    const tags = parseTagFilter(tag.value);
    const rows = devices.filter(d =>
      (!online.value || (online.value === 'online') === d.online) &&
      (!model.value || d.model === model.value) &&
      tags.every(([k, v]) => d.tags && d.tags[k] === v) &&
      (!text || [d.id, d.model, ...Object.entries(d.tags || {}).map(([k, v]) => k + '=' + v)].some(s => s.toLowerCase().includes(text))));
    count.textContent = rows.length + ' of ' + devices.length + ' devices';
    tbody.replaceChildren(...rows.map(d => {
      const h = d.health, up = d.update;
      return el('tr', { 'data-device': d.id, class: d.online ? 'online' : 'offline' },
        el('td', {}, el('a', { href: '#/device/' + encodeURIComponent(d.id) }, d.id)),
        el('td', {}, el('span', { class: 'badge ' + (d.online ? 'on' : 'off') }, d.online ? 'online' : 'offline')),
        el('td', { class: 'model' }, d.model || '–'),
        el('td', { class: d.latest && d.latest.event ? 'event' : '' }, outcome(d.latest)),
        el('td', { class: 'num' }, d.events1h === undefined ? '–' : fmt(d.events1h)),
        el('td', { class: 'num' }, fmt(h.inferences_per_s)),
        el('td', { class: 'num' }, fmt(h.latency_p99_ms)),
        el('td', { class: 'num' }, fmt(h.buffered)),
        el('td', { class: 'num' }, fmt(h.cpu_percent)),
        el('td', { class: 'num' }, h.soc_temp_c === undefined ? '–' : fmt(h.soc_temp_c)),
        el('td', {}, up && up.phase ? up.phase + (up.target ? ' ' + modelName(up.target) : '') : '–'),
        el('td', {}, ago(d.lastSeen || h.ts)),
        el('td', { class: 'tags' }, Object.entries(d.tags || {}).sort().map(([k, v]) =>
          el('button', { type: 'button', class: 'tag', title: 'filter by this tag', onclick: () => { tag.value = k + '=' + v; keep(); draw(); } }, k + '=' + v))));
    }));
  };
  for (const input of [q, tag]) input.addEventListener('input', () => { keep(); draw(); });
  for (const s of [online, model]) s.addEventListener('change', () => { keep(); draw(); });

  every(5000, async gen => {
    const [devs, tags] = await Promise.all([api('/v1/devices'), api('/v1/tags').catch(() => ({}))]);
    if (gen !== generation) return;
    devices = list(devs).map(device).filter(d => d.id);
    for (const d of devices) if (!d.tags) d.tags = (tags && tags[d.id]) || {};
    const models = [...new Set(devices.map(d => d.model).filter(Boolean))].sort();
    const want = model.value || params.get('model') || '';
    model.replaceChildren(el('option', { value: '' }, 'every model'), ...models.map(m => el('option', { value: m }, m)));
    model.value = models.includes(want) ? want : '';
    draw();
  });
}

// ---- device page ----

const RANGES = { '15m': 15 * 60e3, '1h': 3600e3, '6h': 6 * 3600e3, '24h': 24 * 3600e3, '7d': 7 * 24 * 3600e3 };

function field(label, value, id) {
  return el('div', { class: 'field' }, el('span', { class: 'label' }, label), el('span', { class: 'value', id }, value));
}

function deviceView(id, params) {
  const range = RANGES[params.get('range')] ? params.get('range') : '1h';
  const head = el('section', { class: 'device-head card' });
  const sel = el('select', { id: 'range' }, Object.keys(RANGES).map(r => el('option', { value: r }, 'last ' + r)));
  sel.value = range;
  sel.addEventListener('change', () => { location.hash = '#/device/' + encodeURIComponent(id) + '?range=' + sel.value; });
  const charts = el('section', { class: 'charts', id: 'charts' });
  main.replaceChildren(el('h1', {}, el('a', { href: '#/' }, 'Fleet'), ' / ', id, ' ', sel), head, charts);

  const since = () => new Date(Date.now() - RANGES[range]).toISOString();
  const live = new Map(); // health.ts → health, from polling the device between history points
  const enc = encodeURIComponent(id);
  let history = [], buckets = [], results = [], tags = {}, drift = [];
  let slow = 0;

  every(REFRESH_MS, async gen => {
    const dev = device(await api('/v1/devices/' + enc));
    // History and summaries change once a minute at most: fetch them every 15 s.
    if (slow-- <= 0) {
      slow = 7;
      [history, buckets, results, tags, drift] = await Promise.all([
        api('/v1/devices/' + enc + '/health?since=' + encodeURIComponent(since())).then(list),
        api('/v1/devices/' + enc + '/outputs?since=' + encodeURIComponent(since())).then(list),
        api('/v1/devices/' + enc + '/results?limit=500&since=' + encodeURIComponent(since())).then(list),
        api('/v1/tags').catch(() => ({})),
        // A controller without the monitoring routes has no drift to show.
        api('/v1/devices/' + enc + '/drift?since=' + encodeURIComponent(since())).then(list).catch(() => []),
      ]);
    } else {
      const newest = results.length ? pick(results[0].result || results[0], 'ts') : since();
      const fresh = list(await api('/v1/devices/' + enc + '/results?limit=500&since=' + encodeURIComponent(newest)));
      const seen = new Set(results.map(r => (r.epoch || 0) + ':' + (r.result || r).seq));
      results = fresh.filter(r => !seen.has((r.epoch || 0) + ':' + (r.result || r).seq)).concat(results).slice(0, 2000);
    }
    if (gen !== generation) return;
    if (!dev.tags) dev.tags = (tags && tags[id]) || {};
    if (dev.health && dev.health.ts) live.set(dev.health.ts, dev.health);
    drawHead(head, dev);
    drawCharts(charts, history, [...live.values()], buckets, results, Date.now() - RANGES[range]);
    charts.append(...driftCharts(drift));
  });
}

function drawHead(head, d) {
  const h = d.health, up = d.update;
  const upd = up && up.phase
    ? up.phase + (up.target && up.target.name ? ' → ' + modelName(up.target) : '') + (up.progress ? ' (' + Math.round(up.progress * 100) + '%)' : '') + (up.reason ? ': ' + up.reason : '')
    : 'idle';
  head.replaceChildren(...[
    field('State', el('span', { class: 'badge ' + (d.online ? 'on' : 'off') }, d.online ? 'online' : 'offline'), 'd-state'),
    field('Model', d.model || '–', 'd-model'),
    field('Update', upd, 'd-update'),
    field('Latest outcome', outcome(d.latest), 'd-latest'),
    field('Agent', d.agent || '–'),
    field('Last seen', ago(d.lastSeen || h.ts)),
    field('Uptime', duration(h.uptime_s)),
    field('Results stored', d.stored === undefined ? '–' : fmt(d.stored)),
    field('Sensor', h.sensor_status || '–'),
    field('Tags', Object.entries(d.tags || {}).map(([k, v]) => k + '=' + v).join(' ') || '–'),
    h.last_error ? field('Last error', h.last_error) : null,
  ].filter(Boolean));
}

// healthSeries joins minute history with the live snapshots seen since the page opened.
function healthSeries(history, live) {
  const pts = history.map(p => [Date.parse(p.start), p.health || {}]);
  const first = pts.length ? pts[pts.length - 1][0] : -Infinity;
  for (const h of live) {
    const t = Date.parse(h.ts);
    if (t > first) pts.push([t, h]);
  }
  return pts.filter(p => Number.isFinite(p[0])).sort((a, b) => a[0] - b[0]);
}

function drawCharts(box, history, live, buckets, results, from) {
  const hp = healthSeries(history, live);
  const s = (name, f) => ({ name, points: hp.map(([t, h]) => [t, f(h)]).filter(p => typeof p[1] === 'number') });
  // Buckets of every model in one minute are added up: the chart is the device's outputs.
  const perMin = new Map();
  const hist = [];
  const labels = new Map();
  for (const b of buckets) {
    const t = Date.parse(b.start);
    const m = perMin.get(t) || { count: 0, events: 0, sum: 0 };
    m.count += b.count || 0; m.events += b.events || 0; m.sum += b.score_sum || 0;
    perMin.set(t, m);
    (b.score_hist || []).forEach((n, i) => { hist[i] = (hist[i] || 0) + n; });
    for (const [k, v] of Object.entries(b.labels || {})) labels.set(k, (labels.get(k) || 0) + v);
  }
  const mins = [...perMin.entries()].sort((a, b) => a[0] - b[0]);
  const rs = results.map(r => r.result || r).filter(r => r && r.ts);
  const edges = [0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 5, 10, 100];
  const histLabels = edges.map(e => '<' + e).concat(['≥100']);
  const topLabels = [...labels.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  const o = { from };
  box.replaceChildren(
    lineChart('Inference rate (/s)', [s('inferences/s', h => h.inferences_per_s)], { ...o, cls: 'c-rate' }),
    lineChart('Inference latency (ms)', [s('p50', h => h.latency_p50_ms), s('p95', h => h.latency_p95_ms), s('p99', h => h.latency_p99_ms)], { ...o, cls: 'c-latency' }),
    lineChart('Buffered results', [s('buffered', h => h.buffered)], { ...o, cls: 'c-buffered' }),
    lineChart('CPU (% of one core)', [s('cpu %', h => h.cpu_percent)], { ...o, cls: 'c-cpu' }),
    lineChart('SoC temperature (°C)', [s('°C', h => h.soc_temp_c)], { ...o, cls: 'c-temp' }),
    lineChart('Events per minute', [{ name: 'events', points: mins.map(([t, m]) => [t, m.events]) }, { name: 'results', points: mins.map(([t, m]) => [t, m.count]) }], { ...o, cls: 'c-events', dots: true }),
    lineChart('Mean score per minute', [{ name: 'mean score', points: mins.filter(([, m]) => m.count).map(([t, m]) => [t, m.sum / m.count]) }], { ...o, cls: 'c-mean', dots: true }),
    lineChart('Score of recent results', [{ name: 'score', points: rs.map(r => [Date.parse(r.ts), r.score]) }, { name: 'events', points: rs.filter(r => r.event).map(r => [Date.parse(r.ts), r.score]) }], { cls: 'c-score', dots: true }),
    barChart('Score distribution', histLabels, edges.map((_, i) => hist[i] || 0).concat([hist[edges.length] || 0]), { cls: 'c-hist' }),
    barChart('Class counts', topLabels.map(l => l[0]), topLabels.map(l => l[1]), { cls: 'c-labels' }),
  );
}

// ---- drift ----

// driftCharts draws a device's drift scores per window (by window end), one chart per score,
// with the threshold of the latest window as a dashed line. At most four features are drawn:
// those that drifted in the range first, then the highest scores.
export function driftCharts(points) {
  const pts = points.filter(p => p && Array.isArray(p.features) && Date.parse(p.end));
  const th = (pts.length && pts[pts.length - 1].thresholds) || {};
  const names = new Map(); // feature → [ever drifted, highest psi]
  for (const p of pts) for (const f of p.features) {
    const k = (names.get(f.name) || [false, 0]);
    names.set(f.name, [k[0] || (f.drifted || []).length > 0, Math.max(k[1], f.psi || 0, f.cusum || 0)]);
  }
  const top = [...names.entries()].sort((a, b) => (b[1][0] - a[1][0]) || (b[1][1] - a[1][1]) || a[0].localeCompare(b[0])).slice(0, 4).map(e => e[0]);
  const series = (score, scoredOnly) => top.map(name => ({
    name,
    points: pts.map(p => [Date.parse(p.end), p.features.find(f => f.name === name)])
      .filter(([, f]) => f && (!scoredOnly || f.scored)).map(([t, f]) => [t, f[score]]),
  }));
  const lim = (name, v) => (v > 0 ? [{ name, value: v }] : []);
  return [
    lineChart('Drift PSI per window', series('psi', true), { cls: 'c-drift-psi', dots: true, limits: lim('PSI threshold', th.psi) }),
    lineChart('Drift KS per window', series('ks', true), { cls: 'c-drift-ks', dots: true, limits: lim('KS threshold', th.ks) }),
    lineChart('Drift JS distance per window', series('js', true), { cls: 'c-drift-js', dots: true, limits: lim('JS threshold', th.js) }),
    lineChart('Drift CUSUM (σ)', series('cusum', false), { cls: 'c-drift-cusum', dots: true, limits: lim('CUSUM h', th.cusum_h) }),
  ];
}

// driftView is the fleet drift view: per model version, which devices drift, since when and
// on which features (GET /v1/drift, the same view as `outpost drift`).
function driftView(params) {
  const ranges = { '1h': 3600e3, '24h': 24 * 3600e3, '7d': 7 * 24 * 3600e3 };
  const range = ranges[params.get('range')] ? params.get('range') : '24h';
  const sel = el('select', { id: 'drift-range' }, Object.keys(ranges).map(r => el('option', { value: r }, 'windows of the last ' + r)));
  sel.value = range;
  sel.addEventListener('change', () => { location.hash = '#/drift?range=' + sel.value; });
  const box = el('div', { id: 'drift' });
  const summary = el('span', { id: 'drift-count' });
  main.replaceChildren(el('h1', {}, 'Drift ', sel, ' ', summary), box);
  every(5000, async gen => {
    const view = list(await api('/v1/drift?since=' + encodeURIComponent(new Date(Date.now() - ranges[range]).toISOString())));
    if (gen !== generation) return;
    const drifting = view.reduce((n, m) => n + (m.drifting || 0), 0);
    summary.textContent = drifting + ' drifting of ' + view.reduce((n, m) => n + (m.devices || 0), 0) + ' monitored';
    if (view.length === 0) {
      box.replaceChildren(el('p', { class: 'empty' }, 'No drift windows in this range: devices send one per closed monitoring window.'));
      return;
    }
    box.replaceChildren(...view.map(m => el('section', { class: 'drift-model card', 'data-model': m.model },
      el('h2', {}, m.model + ': ' + m.drifting + ' of ' + m.devices + ' devices drifting'),
      el('table', { class: 'drift' },
        el('thead', {}, el('tr', {}, ['Device', 'State', 'Since', 'Drifted windows', 'Worst PSI', 'Features', 'Last window'].map(h => el('th', {}, h)))),
        el('tbody', {}, (m.rows || []).map(d => el('tr', { 'data-device': d.device, 'data-drifting': d.drifting ? 'true' : 'false' },
          el('td', {}, el('a', { href: '#/device/' + encodeURIComponent(d.device) }, d.device)),
          el('td', {}, el('span', { class: 'badge ' + (d.drifting ? 'drift' : 'ok') }, d.drifting ? 'drifting' : 'ok')),
          el('td', {}, d.since ? new Date(d.since).toLocaleString() + ' (' + ago(d.since) + ')' : '–'),
          el('td', { class: 'num' }, (d.drifted_windows || 0) + ' of ' + (d.windows || 0)),
          el('td', { class: 'num' }, fmt(d.worst_psi)),
          el('td', { class: 'features' }, (d.features || []).map(f => f.name + ' (' + (f.drifted || []).join(', ') + ')').join('; ') || '–'),
          el('td', {}, '#' + d.last_window + ', ' + ago(d.received)))))))));
  });
}

// ---- routing ----

function route() {
  stop();
  generation++;
  if (!sessionStorage.getItem(TOKEN_KEY)) { login(); return; }
  logoutBtn.hidden = false;
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  const m = /^\/device\/(.+)$/.exec(path || '');
  if (m) deviceView(decodeURIComponent(m[1]), params);
  else if (path === '/drift') driftView(params);
  else fleetView(params);
}

logoutBtn.addEventListener('click', () => login());
window.addEventListener('hashchange', route);
route();
