/* weir dashboard — app.js
 *
 * Owns the whole single-page dashboard served at "/" (index.html is only a shell):
 *   - hash routes: #/ (job list + maintenance), #/jobs/{jid} (one job),
 *     #/jobs/{jid}/checkpoints/{cid} (job page with that checkpoint's timeline open);
 *   - transport: GET /dashboard/state once, then EventSource /dashboard/events (event "update"),
 *     or polling /dashboard/state every second when a bearer token is needed, or nothing more
 *     when the page URL has ?live=0;
 *   - rendering: job list, maintenance tables, job header, job graph (SVG laid out by the
 *     vendored dagre, global `dagre`), subtask panel, checkpoints (counts, summary, history,
 *     per-subtask timeline fetched on demand), exceptions.
 * Plain ES2020, no dependencies besides dagre, no requests to any other origin.
 */
'use strict';
(() => {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const TOKEN_KEY = 'weir.dashboard.token';
  const NODE_W = 236, NODE_H = 82;
  const SEG = [ // timeline bar segments, in the order they happen after the trigger
    { key: 'delay', label: 'start delay', color: '#9e9e9e' },
    { key: 'align', label: 'alignment', color: '#f39c12' },
    { key: 'sync', label: 'sync', color: '#2f7ed8' },
    { key: 'async', label: 'async', color: '#2ea44f' },
  ];
  const S = {
    paused: new URLSearchParams(location.search).get('live') === '0',
    route: null, data: null, gen: 0, es: null, timer: null,
    last: {}, graph: null, selected: null, openEx: new Set(), timeline: null,
  };
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    return e;
  }
  function addKids(e, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }
  const el = (tag, attrs, ...kids) => addKids(setAttrs(document.createElement(tag), attrs), kids);
  const sv = (tag, attrs, ...kids) => addKids(setAttrs(document.createElementNS(SVGNS, tag), attrs), kids);
  const fill = (node, ...kids) => { node.replaceChildren(); return addKids(node, kids); };
  const td = (v, cls) => el('td', { class: cls }, v);
  const num = (v) => td(v, 'num');

  function table(attrs, headers, rows) { // numeric columns (td.num in the first row) get right-aligned headers
    const first = rows[0] ? Array.from(rows[0].children) : [];
    return el('table', Object.assign({ class: 'grid' }, attrs),
      el('thead', {}, el('tr', {}, headers.map((h, i) => el('th', { class: first[i] && first[i].className }, h)))),
      el('tbody', {}, rows));
  }
  // Re-render a section only when its data changed (keeps <details>, scroll and selection stable).
  function changed(key, value) {
    const j = JSON.stringify(value === undefined ? null : value);
    if (S.last[key] === j) return false;
    S.last[key] = j;
    return true;
  }

  // ---------------------------------------------------------------- formatting
  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
  function fmtBytes(b) {
    if (!isNum(b)) return '—';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(b) >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return i === 0 ? `${Math.round(b)} B` : `${b.toFixed(b < 10 ? 2 : b < 100 ? 1 : 0)} ${u[i]}`;
  }
  function fmtDuration(ms) {
    if (!isNum(ms) || ms < 0) return '—';
    if (ms < 1) return `${ms.toFixed(2)} ms`;
    if (ms < 10 && !Number.isInteger(ms)) return `${ms.toFixed(1)} ms`;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const t = Math.floor(s), d = Math.floor(t / 86400), h = Math.floor(t / 3600) % 24;
    const m = Math.floor(t / 60) % 60, sec = t % 60;
    if (d > 0) return `${d}d ${h}h ${m}m`;
    if (h > 0) return `${h}h ${m}m ${sec}s`;
    return `${m}m ${sec}s`;
  }
  function fmtCount(n) {
    if (!isNum(n)) return '—';
    const a = Math.abs(n);
    if (a < 1000) return a < 100 && !Number.isInteger(n) ? n.toFixed(1) : String(Math.round(n));
    for (const [div, suf] of [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
      if (a >= div) { const v = n / div; return `${v.toFixed(Math.abs(v) < 100 ? 1 : 0)}${suf}`; }
    }
    return String(n);
  }
  const fmtRate = (r) => (isNum(r) ? `${fmtCount(r)}/s` : '—');
  const fmtPct = (r) => (isNum(r) ? `${Math.round(r * 100)}%` : '—');
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function fmtTime(ts) {
    if (!isNum(ts) || ts <= 0) return '—';
    const d = new Date(ts);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  const fmtClock = (ts) => fmtTime(ts).slice(11);
  const CP_TYPES = { CHECKPOINT: 'aligned', UNALIGNED_CHECKPOINT: 'unaligned', SAVEPOINT: 'savepoint', AT_LEAST_ONCE: 'at least once' };
  const fmtCpType = (e) => CP_TYPES[e.checkpoint_type] || (e.is_savepoint ? 'savepoint' : e.checkpoint_type || '—');

  // ---------------------------------------------------------------- transport
  const getToken = () => { try { return sessionStorage.getItem(TOKEN_KEY); } catch (_) { return null; } };
  function httpError(status, message) { const e = new Error(message); e.status = status; return e; }

  async function fetchJson(url) {
    const headers = { Accept: 'application/json' };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try { res = await fetch(url, { headers, cache: 'no-store' }); } catch (e) {
      throw httpError(0, `${url}: server unreachable (${e.message})`);
    }
    if (!res.ok) {
      let body = '';
      try { body = (await res.text()).trim().slice(0, 200); } catch (_) { /* ignore */ }
      throw httpError(res.status, `${url}: HTTP ${res.status} ${res.statusText}${body ? ` — ${body}` : ''}`);
    }
    try { return await res.json(); } catch (e) { throw httpError(res.status, `${url}: invalid JSON (${e.message})`); }
  }
  const withJob = (path) => (S.route.jid ? `${path}?job=${encodeURIComponent(S.route.jid)}` : path);

  function stopTransport() {
    if (S.es) { S.es.close(); S.es = null; }
    clearTimeout(S.timer);
    S.timer = null;
    S.gen++;
  }
  // Fetch the state once (also detects 401), then stream unless paused.
  async function connect() {
    stopTransport();
    const gen = S.gen;
    try {
      const data = await fetchJson(withJob('/dashboard/state'));
      if (gen !== S.gen) return;
      onUpdate(data);
    } catch (e) {
      if (gen !== S.gen) return;
      onFailure(e);
      if (e.status !== 401 && !S.paused) S.timer = setTimeout(connect, 3000);
      return;
    }
    if (S.paused) setIndicator('paused');
    else if (getToken()) { setIndicator('polling'); schedulePoll(gen); }
    else openEventSource(gen);
  }
  function openEventSource(gen) {
    const es = new EventSource(withJob('/dashboard/events'));
    S.es = es;
    es.onopen = () => setIndicator('live');
    es.addEventListener('update', (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (e) { showError(`Bad update from server: ${e.message}`); return; }
      setIndicator('live');
      onUpdate(data);
    });
    es.onerror = () => {
      if (gen !== S.gen) return;
      if (es.readyState === EventSource.CLOSED) { // refused for good: diagnose with a plain fetch
        S.es = null;
        setIndicator('offline');
        S.timer = setTimeout(connect, 2000);
      } else {
        setIndicator('reconnecting');
        showError('Live updates interrupted; reconnecting…');
      }
    };
  }
  function schedulePoll(gen) {
    S.timer = setTimeout(async () => {
      if (gen !== S.gen) return;
      try {
        const data = await fetchJson(withJob('/dashboard/state'));
        if (gen !== S.gen) return;
        setIndicator('polling');
        onUpdate(data);
      } catch (e) {
        if (gen !== S.gen) return;
        onFailure(e);
        if (e.status === 401) return;
      }
      schedulePoll(gen);
    }, 1000);
  }
  function onFailure(e) {
    if (e.status === 401) { stopTransport(); showTokenForm(); return; }
    setIndicator('offline');
    showError(e.message);
  }
  function onUpdate(data) {
    S.data = data;
    clearError();
    $('auth').hidden = true;
    $('last-update').textContent = `updated ${fmtClock(isNum(data.now) ? data.now : Date.now())}`;
    render();
  }

  // ---------------------------------------------------------------- chrome: banner, indicator, token
  function showError(msg) { const b = $('error-banner'); b.textContent = msg; b.hidden = false; }
  function clearError() { $('error-banner').hidden = true; }
  const MODES = { live: 'live', polling: 'live (polling)', paused: 'paused', reconnecting: 'reconnecting', offline: 'offline', auth: 'token needed' };
  function setIndicator(mode) { const b = $('live-indicator'); b.dataset.mode = mode; b.textContent = MODES[mode] || mode; }
  function showTokenForm() {
    const had = getToken();
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
    setIndicator('auth');
    clearError();
    if (had) $('token-error').textContent = 'That token was rejected.';
    $('auth').hidden = false;
    $('token-input').focus();
  }
  function onTokenSubmit(ev) {
    ev.preventDefault();
    const t = $('token-input').value.trim();
    if (!t) return;
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { showError(`Cannot store the token: ${e.message}`); }
    $('token-input').value = '';
    $('token-error').textContent = '';
    $('auth').hidden = true;
    connect();
    if (S.route.cid != null) loadTimeline();
  }
  function togglePause() {
    S.paused = !S.paused;
    if (S.paused) { stopTransport(); setIndicator('paused'); } else connect();
  }

  // ---------------------------------------------------------------- routing
  function parseRoute() {
    const dec = (x) => { try { return decodeURIComponent(x); } catch (_) { return x; } };
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(dec);
    if (parts[0] === 'jobs' && parts[1]) {
      return { view: 'job', jid: parts[1], cid: parts[2] === 'checkpoints' && parts[3] ? parts[3] : null };
    }
    return { view: 'list', jid: null, cid: null };
  }
  function onRoute() {
    const prev = S.route, r = (S.route = parseRoute());
    if (!prev || prev.view !== r.view || prev.jid !== r.jid) {
      S.data = null; S.last = {}; S.graph = null; S.selected = null; S.timeline = null;
      buildSkeleton();
      connect();
    } else if (S.data) render();
    if (r.view === 'job') {
      if (r.cid == null) closeTimeline();
      else if (!S.timeline || S.timeline.cid !== r.cid) loadTimeline();
    }
  }
  const jobHref = (jid) => `#/jobs/${encodeURIComponent(jid)}`;

  function buildSkeleton() {
    const v = $('view');
    if (S.route.view === 'list') {
      document.title = 'weir · jobs';
      v.replaceChildren(
        el('section', { class: 'card' }, el('h2', {}, 'Jobs'), el('div', { id: 'jobs-wrap' }, el('p', { class: 'muted' }, 'Loading…'))),
        el('section', { class: 'card', id: 'maintenance', hidden: true }, el('h2', {}, 'Maintenance'), el('div', { id: 'maintenance-wrap' })));
      return;
    }
    v.replaceChildren(
      el('section', { id: 'job-header', class: 'job-header' }, el('p', { class: 'muted' }, 'Loading…')),
      el('div', { id: 'job-body', hidden: true },
        el('section', { class: 'card' }, el('h2', {}, 'Job graph'),
          el('div', { id: 'graph-wrap', class: 'graph-wrap' }),
          el('div', { class: 'graph-legend muted' }, 'Fill: worst subtask — blue idle → red busy; black = backpressured.')),
        el('section', { id: 'vertex-panel', class: 'card', hidden: true }),
        el('section', { id: 'checkpoints', class: 'card' }, el('h2', {}, 'Checkpoints'),
          el('div', { id: 'checkpoint-overview' }),
          el('div', { id: 'checkpoint-detail' })),
        el('section', { id: 'exceptions', class: 'card' }, el('h2', {}, 'Exceptions'), el('div', { id: 'exceptions-wrap' }))));
  }

  function render() {
    if (S.route.view === 'list') renderJobList(S.data);
    else renderJobPage(S.data);
  }

  // ---------------------------------------------------------------- job list + maintenance
  function renderJobList(d) {
    const jobs = (d.overview && d.overview.jobs) || [];
    if (changed('jobs', jobs)) {
      $('jobs-wrap').replaceChildren(jobs.length === 0 ? el('p', { class: 'muted' }, 'No jobs.') :
        table({ id: 'job-list' }, ['Name', 'State', 'Start time', 'End time', 'Duration'], jobs.map((j) =>
          el('tr', { class: 'job-row', 'data-jid': j.jid },
            td(el('a', { href: jobHref(j.jid) }, j.name || j.jid)),
            td(stateBadge(j.state)), td(fmtTime(j['start-time'])), td(fmtTime(j['end-time'])),
            num(fmtDuration(j.duration))))));
    }
    renderMaintenance(d.maintenance);
  }
  const stateBadge = (s) => el('span', { class: `badge state-${s}` }, s || '?');

  function renderMaintenance(m) {
    $('maintenance').hidden = !m;
    if (!m || !changed('maint', m)) return;
    const tables = m.tables || [];
    fill($('maintenance-wrap'), tables.length === 0 ? el('p', { class: 'muted' }, 'No maintained tables.') :
      tables.map((t) => el('div', { class: 'maint-table' }, el('h3', {}, t.table),
        table({ class: 'grid maintenance', 'data-table': t.table },
          ['Task', 'Runs', 'Failures', 'Last run', 'Result', 'Duration', 'Files rewritten', 'Bytes rewritten', 'Snapshots expired', 'Orphans deleted', 'Message'],
          (t.tasks || []).map(maintRow)))));
  }
  function maintRow(t) {
    const r = t.last_run || {};
    return el('tr', { 'data-task': t.task },
      td(t.task), num(fmtCount(t.runs)), num(el('span', { class: t.failures ? 'bad' : '' }, fmtCount(t.failures))),
      td(t.last_run ? fmtTime(r.started) : 'never'),
      td(t.last_run ? el('span', { class: `badge result-${r.result}` }, r.result) : '—'),
      num(fmtDuration(r.duration_ms)), num(fmtCount(r.files_rewritten)), num(fmtBytes(r.bytes_rewritten)),
      num(fmtCount(r.snapshots_expired)), num(fmtCount(r.orphans_deleted)),
      el('td', { class: 'message', title: r.message || '' }, r.message || ''));
  }

  // ---------------------------------------------------------------- job page
  function renderJobPage(d) {
    const job = d.job;
    if (!job) {
      const known = ((d.overview && d.overview.jobs) || []).some((j) => j.jid === S.route.jid);
      $('job-header').replaceChildren(el('p', { class: 'notice', id: 'job-missing' },
        known ? 'Waiting for job details…' : `Job ${S.route.jid} is not known to this server.`));
      $('job-body').hidden = true;
      return;
    }
    document.title = `weir · ${job.name}`;
    $('job-body').hidden = false;
    renderHeader(job);
    renderGraph(job);
    renderVertexPanel(job);
    renderCheckpoints(d.checkpoints);
    renderExceptions(d.exceptions);
    redrawTimeline();
  }
  function renderHeader(job) {
    $('job-header').replaceChildren(
      el('h1', {}, el('span', { id: 'job-name' }, job.name), ' ', stateBadge(job.state)),
      el('div', { class: 'kv' },
        el('span', {}, 'JID ', el('code', { id: 'job-jid' }, job.jid)),
        el('span', {}, 'Started ', fmtTime(job['start-time'])),
        job['end-time'] > 0 ? el('span', {}, 'Ended ', fmtTime(job['end-time'])) : null,
        el('span', {}, 'Duration ', el('b', { id: 'job-duration' }, fmtDuration(job.duration)))));
  }

  // ---------------------------------------------------------------- job graph
  // The vertex colour: Flink's rule applied to the worst subtask.
  function vertexLoad(v) {
    const subs = (v && v.subtasks) || [];
    const m = (v && v.metrics) || {};
    const max = (k, fb) => (subs.length ? Math.max(...subs.map((s) => (isNum(s[k]) ? s[k] : 0))) : (isNum(m[fb]) ? m[fb] : 0));
    const bp = max('backPressuredRatio', 'backpressured-ratio');
    const busy = max('busyRatio', 'busy-ratio');
    if (bp >= busy && bp > 0.1) {
      const t = Math.min(1, (bp - 0.1) / 0.9);
      const g = Math.round(0x4a * (1 - t)).toString(16).padStart(2, '0'); // #4a4a4a (29%) → #000000
      return { state: 'backpressured', fill: `#${g}${g}${g}`, dark: true, bp, busy };
    }
    const b = Math.min(1, Math.max(0, busy));
    const h = Math.round(210 * (1 - b)), s = Math.round(70 + 10 * b), l = Math.round(75 - 25 * b);
    return { state: b < 0.1 ? 'idle' : 'busy', fill: `hsl(${h}, ${s}%, ${l}%)`, dark: l <= 55 && (h < 30 || h > 200), bp, busy };
  }
  function planOf(job) {
    const p = job.plan || {};
    const nodes = p.nodes && p.nodes.length ? p.nodes :
      (job.vertices || []).map((v) => ({ id: v.id, description: v.name, parallelism: v.parallelism, inputs: [] }));
    let edges = p.edges;
    if (!Array.isArray(edges)) {
      edges = [];
      nodes.forEach((n) => (n.inputs || []).forEach((i) => edges.push({ source: i.id, target: n.id, ship_strategy: i.ship_strategy })));
    }
    return { nodes, edges };
  }
  function edgePath(pts) { // smooth path through dagre's points
    let d = `M${pts[0].x},${pts[0].y}`;
    for (let i = 1; i < pts.length - 1; i++) {
      const mx = (pts[i].x + pts[i + 1].x) / 2, my = (pts[i].y + pts[i + 1].y) / 2;
      d += ` Q${pts[i].x},${pts[i].y} ${i === pts.length - 2 ? `${pts[i + 1].x},${pts[i + 1].y}` : `${mx},${my}`}`;
    }
    return pts.length === 2 ? `${d} L${pts[1].x},${pts[1].y}` : d;
  }
  function renderGraph(job) {
    if (typeof dagre === 'undefined') return;
    const plan = planOf(job);
    if (plan.nodes.length === 0) {
      if (S.graph !== null || !$('graph-wrap').firstChild) fill($('graph-wrap'), el('p', { class: 'muted' }, 'No vertices to show.'));
      S.graph = null;
      return;
    }
    const key = JSON.stringify([plan.nodes.map((n) => n.id), plan.edges.map((e) => [e.source, e.target, e.ship_strategy])]);
    if (!S.graph || S.graph.key !== key) {
      S.graph = buildGraph(plan, key);
      $('graph-wrap').replaceChildren(S.graph.svg);
    }
    updateGraph(job, plan);
  }
  function buildGraph(plan, key) {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: 'LR', nodesep: 36, ranksep: 70, edgesep: 20, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(() => ({}));
    plan.nodes.forEach((n) => g.setNode(n.id, { width: NODE_W, height: NODE_H }));
    const edgeIdx = [];
    plan.edges.forEach((e, i) => {
      if (!g.hasNode(e.source) || !g.hasNode(e.target)) return;
      g.setEdge(e.source, e.target, { width: 96, height: 34, labelpos: 'c' }, `e${i}`);
      edgeIdx.push(i);
    });
    dagre.layout(g);
    const { width, height } = g.graph();
    const svg = sv('svg', { id: 'job-graph', class: 'job-graph', width: Math.ceil(width), height: Math.ceil(height), viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}` },
      sv('defs', {}, sv('marker', { id: 'arrowhead', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto' },
        sv('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))));
    const edges = edgeIdx.map((i) => {
      const e = plan.edges[i];
      const lab = g.edge(e.source, e.target, `e${i}`);
      const rate = sv('text', { class: 'edge-rate', x: lab.x, y: lab.y + 12, 'text-anchor': 'middle' });
      const grp = sv('g', { class: 'edge', 'data-source': e.source, 'data-target': e.target, 'data-ship-strategy': e.ship_strategy || '' },
        sv('path', { d: edgePath(lab.points), class: 'edge-path', 'marker-end': 'url(#arrowhead)' }),
        sv('text', { class: 'edge-label', x: lab.x, y: lab.y - 2, 'text-anchor': 'middle' }, e.ship_strategy || ''),
        rate);
      svg.append(grp);
      return { i, rate };
    });
    const nodes = new Map();
    plan.nodes.forEach((n) => {
      const pos = g.node(n.id);
      const t = (y, cls) => sv('text', { x: 10, y, class: cls });
      const parts = { title: sv('title'), rect: sv('rect', { width: NODE_W, height: NODE_H, rx: 6, ry: 6 }), name: t(20, 'v-name'), par: t(39, 'v-line'), load: t(56, 'v-line'), rates: t(73, 'v-line') };
      parts.g = sv('g', { class: 'vertex', 'data-vertex-id': n.id, transform: `translate(${pos.x - NODE_W / 2},${pos.y - NODE_H / 2})`, onclick: () => selectVertex(n.id) },
        parts.title, parts.rect, parts.name, parts.par, parts.load, parts.rates);
      svg.append(parts.g);
      nodes.set(n.id, parts);
    });
    return { key, svg, nodes, edges };
  }
  function updateGraph(job, plan) {
    const verts = new Map((job.vertices || []).map((v) => [v.id, v]));
    const descr = new Map(plan.nodes.map((n) => [n.id, n]));
    for (const [id, p] of S.graph.nodes) {
      const v = verts.get(id), n = descr.get(id) || {};
      const name = (v && v.name) || n.description || id;
      const load = vertexLoad(v);
      const m = (v && v.metrics) || {};
      setAttrs(p.g, { 'data-name': name, 'data-state': load.state });
      p.g.classList.toggle('dark', load.dark);
      p.g.classList.toggle('selected', S.selected === id);
      p.rect.setAttribute('fill', load.fill);
      p.title.textContent = `${name}\n${load.state}: busy ${fmtPct(load.busy)}, backpressured ${fmtPct(load.bp)} (worst subtask)`;
      p.name.textContent = name.length > 32 ? `${name.slice(0, 31)}…` : name;
      p.par.textContent = `Parallelism ${(v && v.parallelism) || n.parallelism || '?'}`;
      p.load.textContent = `Busy ${fmtPct(load.busy)} · Backpressured ${fmtPct(load.bp)}`;
      p.rates.textContent = `In ${fmtRate(m['read-records-per-second'])} · Out ${fmtRate(m['write-records-per-second'])}`;
    }
    for (const e of S.graph.edges) e.rate.textContent = fmtRate((plan.edges[e.i] || {})['records-per-second']);
  }

  // ---------------------------------------------------------------- subtask panel
  function selectVertex(id) {
    S.selected = S.selected === id ? null : id;
    if (!S.data || !S.data.job) return;
    if (S.graph) updateGraph(S.data.job, planOf(S.data.job));
    renderVertexPanel(S.data.job);
  }
  function renderVertexPanel(job) {
    const panel = $('vertex-panel');
    const v = (job.vertices || []).find((x) => x.id === S.selected);
    if (!v) { panel.hidden = true; if (S.selected && S.graph && !S.graph.nodes.has(S.selected)) S.selected = null; return; }
    panel.hidden = false;
    panel.dataset.vertexId = v.id;
    panel.replaceChildren(
      el('div', { class: 'panel-head' },
        el('h2', {}, `${v.name} `, el('span', { class: 'muted' }, `parallelism ${v.parallelism}`)),
        el('button', { type: 'button', class: 'close', title: 'Close', onclick: () => selectVertex(v.id) }, '×')),
      table({ id: 'subtasks' },
        ['Subtask', 'Busy', 'Backpressured', 'Idle', 'Records in/s', 'Records out/s', 'In-pool usage', 'Out-pool usage',
          'Queued / capacity buffers', 'Buffer size', 'In-flight bytes', 'Out pending buffers'],
        (v.subtasks || []).map((s) => el('tr', { class: 'subtask-row', 'data-subtask': s.subtask },
          num(s.subtask), num(fmtPct(s.busyRatio)), num(fmtPct(s.backPressuredRatio)), num(fmtPct(s.idleRatio)),
          num(fmtRate(s['read-records-per-second'])), num(fmtRate(s['write-records-per-second'])),
          num(fmtPct(s.inPoolUsage)), num(fmtPct(s.outPoolUsage)),
          num(`${s['input-queued-buffers'] ?? '—'} / ${s['input-capacity-buffers'] ?? '—'}`),
          num(s['input-buffer-size-bytes'] == null ? '—' : fmtBytes(s['input-buffer-size-bytes'])),
          num(fmtBytes(s['input-inflight-bytes'])), num(s['output-pending-buffers'] ?? '—')))));
  }

  // ---------------------------------------------------------------- checkpoints
  function renderCheckpoints(cp) {
    maybeRefreshTimeline(cp);
    if (!changed('cp', cp)) { markSelectedCheckpoint(); return; }
    const box = $('checkpoint-overview');
    if (!cp) { box.replaceChildren(el('p', { class: 'muted' }, 'No checkpoint statistics for this job.')); return; }
    const c = cp.counts || {}, l = cp.latest || {};
    const latest = (label, e, extra) => (e ? el('span', {}, `${label} `, el('b', {}, `#${e.id}`), ` ${extra}`) : null);
    box.replaceChildren(
      el('div', { id: 'checkpoint-counts', class: 'kv' },
        ['completed', 'failed', 'in_progress', 'restored', 'total'].map((k) =>
          el('span', { class: `count count-${k}` }, `${k.replace('_', ' ')} `, el('b', {}, fmtCount(c[k] || 0))))),
      el('div', { class: 'kv latest' },
        latest('Latest completed', l.completed, l.completed && `at ${fmtTime(l.completed.latest_ack_timestamp)}, ${fmtBytes(l.completed.state_size)}`),
        latest('Latest savepoint', l.savepoint, l.savepoint && `at ${fmtTime(l.savepoint.latest_ack_timestamp)}`),
        latest('Latest failed', l.failed, l.failed && `at ${fmtTime(l.failed.trigger_timestamp)}`),
        latest('Restored', l.restored, l.restored && `at ${fmtTime(l.restored.restore_timestamp)}${l.restored.external_path ? ` from ${l.restored.external_path}` : ''}`)),
      renderCpSummary(cp.summary || {}),
      renderCpHistory(cp.history || []));
    markSelectedCheckpoint();
  }
  function renderCpSummary(sum) {
    const rows = [['End-to-end duration', 'end_to_end_duration', fmtDuration], ['Checkpointed state size', 'state_size', fmtBytes], ['Persisted in-flight data', 'persisted_data', fmtBytes]];
    return table({ id: 'checkpoint-summary', class: 'grid compact' }, ['', 'min', 'avg', 'max', 'p50', 'p99'],
      rows.map(([label, k, f]) => el('tr', { 'data-metric': k }, td(label),
        ['min', 'avg', 'max', 'p50', 'p99'].map((q) => num(f((sum[k] || {})[q]))))));
  }
  function renderCpHistory(hist) {
    if (hist.length === 0) return el('p', { class: 'muted' }, 'No checkpoints yet.');
    return el('div', {}, el('h3', {}, 'History ', el('span', { class: 'muted' }, '(newest first; click a row for its timeline)')),
      table({ id: 'checkpoint-history' }, ['ID', 'Status', 'Type', 'Trigger time', 'Duration', 'State size', 'Persisted in-flight', 'Acknowledged', 'Failure'],
        hist.map((e) => el('tr', { class: 'checkpoint-row', 'data-checkpoint-id': e.id, 'data-status': e.status, onclick: () => openCheckpoint(e.id) },
          num(e.id), td(el('span', { class: `badge status-${e.status}` }, e.status)), td(fmtCpType(e)),
          td(fmtTime(e.trigger_timestamp)), num(fmtDuration(e.end_to_end_duration)), num(fmtBytes(e.state_size)),
          num(fmtBytes(e.persisted_data)), num(`${e.num_acknowledged_subtasks ?? '?'}/${e.num_subtasks ?? '?'}`),
          el('td', { class: 'message', title: e.failure_message || '' }, e.failure_message || '')))));
  }
  function markSelectedCheckpoint() {
    document.querySelectorAll('#checkpoint-history tr.checkpoint-row').forEach((tr) =>
      tr.classList.toggle('selected', tr.dataset.checkpointId === S.route.cid));
  }
  function openCheckpoint(id) {
    const base = jobHref(S.route.jid);
    location.hash = String(id) === S.route.cid ? base : `${base}/checkpoints/${id}`;
  }
  // An open timeline of a checkpoint whose status changed since it was fetched is fetched again.
  function maybeRefreshTimeline(cp) {
    const t = S.timeline;
    if (!t || t.loading || !t.status || !cp) return;
    const e = (cp.history || []).find((h) => String(h.id) === t.cid);
    if (e && e.status !== t.status) loadTimeline();
  }

  // ---------------------------------------------------------------- checkpoint timeline
  function closeTimeline() {
    S.timeline = null;
    const box = $('checkpoint-detail');
    if (box) box.replaceChildren();
    markSelectedCheckpoint();
  }
  async function loadTimeline() {
    const { jid, cid } = S.route;
    const t = { cid, loading: true, status: null };
    S.timeline = t;
    const box = $('checkpoint-detail');
    if (!box.firstChild) box.replaceChildren(el('p', { class: 'muted' }, `Loading checkpoint ${cid}…`));
    markSelectedCheckpoint();
    const base = `/jobs/${encodeURIComponent(jid)}/checkpoints/details/${encodeURIComponent(cid)}`;
    let detail, subs;
    try {
      detail = await fetchJson(base);
      const order = new Map(((S.data && S.data.job && planOf(S.data.job).nodes) || []).map((n, i) => [n.id, i]));
      const vids = Object.keys(detail.tasks || {}).sort((a, b) => (order.get(a) ?? 1e9) - (order.get(b) ?? 1e9));
      subs = await Promise.all(vids.map((vid) => fetchJson(`${base}/subtasks/${encodeURIComponent(vid)}`)
        .catch((e) => ({ id: vid, name: detail.tasks[vid].name, subtasks: [], error: e.message }))));
    } catch (e) {
      if (S.timeline !== t) return;
      t.loading = false;
      if (e.status === 401) { showTokenForm(); return; }
      const unknown = e.status === 404 || e.status === 400;
      box.replaceChildren(el('p', { id: 'checkpoint-timeline-message', class: 'notice' },
        unknown ? `Checkpoint ${cid} is not known for this job (it may have been dropped from the history).` : `Could not load checkpoint ${cid}: ${e.message}`,
        ' ', el('a', { href: jobHref(jid) }, 'close')));
      return;
    }
    if (S.timeline !== t) return;
    Object.assign(t, { loading: false, status: detail.status, detail, subs, width: 0 });
    redrawTimeline();
  }
  // (Re)draw the loaded timeline when the space it has changed (it may load while the page is hidden).
  function redrawTimeline() {
    const t = S.timeline, box = $('checkpoint-detail');
    if (!t || !t.detail || !box || box.clientWidth === 0 || Math.abs(box.clientWidth - t.width) < 20) return;
    t.width = box.clientWidth;
    box.replaceChildren(timelineHeader(t.detail, S.route.jid), drawTimeline(t.detail, t.subs, t.width));
  }
  function timelineHeader(d, jid) {
    return el('div', { class: 'panel-head' },
      el('h3', {}, `Checkpoint #${d.id} `, el('span', { class: `badge status-${d.status}` }, d.status), ' ',
        el('span', { class: 'muted' }, `${fmtCpType(d)} · triggered ${fmtTime(d.trigger_timestamp)} · end-to-end ${fmtDuration(d.end_to_end_duration)} · ` +
          `state ${fmtBytes(d.state_size)} · ${d.num_acknowledged_subtasks ?? '?'}/${d.num_subtasks ?? '?'} acknowledged`)),
      el('a', { class: 'close', href: jobHref(jid), title: 'Close' }, '×'));
  }
  function segmentsOf(s) {
    const delay = s.start_delay || 0, align = (s.alignment && s.alignment.duration) || 0;
    const sync = (s.checkpoint && s.checkpoint.sync) || 0, async_ = (s.checkpoint && s.checkpoint.async) || 0;
    let t = 0;
    return [delay, align, sync, async_].map((len, i) => { const seg = { ...SEG[i], from: t, len }; t += len; return seg; });
  }
  function niceStep(span, target) {
    const raw = span / target, p = 10 ** Math.floor(Math.log10(raw)), f = raw / p;
    return p * (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10);
  }
  // One block per vertex, one row per subtask, bars on a shared axis starting at the trigger.
  function drawTimeline(detail, vertices, boxWidth) {
    const W = Math.max(720, Math.min(1400, boxWidth)), LABEL_W = 200, RIGHT = 24, ROW = 16, BAR = 10, HEAD = 20, TOP = 56;
    let maxT = isNum(detail.end_to_end_duration) ? detail.end_to_end_duration : 0;
    vertices.forEach((v) => (v.subtasks || []).forEach((s) => {
      const segs = segmentsOf(s), last = segs[3];
      maxT = Math.max(maxT, last.from + last.len, isNum(s.end_to_end_duration) ? s.end_to_end_duration : 0);
    }));
    maxT = maxT > 0 ? maxT : 1;
    const step = niceStep(maxT, 8), axisMax = Math.ceil(maxT / step) * step;
    const plotW = W - LABEL_W - RIGHT, x = (t) => LABEL_W + (t / axisMax) * plotW;
    const rows = sv('g', { class: 'timeline-rows' });
    let y = TOP;
    vertices.forEach((v) => {
      const subs = v.subtasks || [];
      const done = subs.filter((s) => s.status === 'completed').length;
      rows.append(sv('text', { class: 'tl-vertex', x: 4, y: y + 14, 'data-vertex-id': v.id },
        `${v.name || v.id}  (${done}/${subs.length} acknowledged)${v.error ? ` — ${v.error}` : ''}`));
      y += HEAD;
      subs.forEach((s, i) => { rows.append(timelineRow(v, s, i, y, { x, ROW, BAR, W })); y += ROW; });
      y += 6;
    });
    const H = y + 8;
    const grid = sv('g', { class: 'tl-axis' });
    for (let k = 0; k * step <= axisMax + step / 2; k++) {
      const t = k * step;
      grid.append(sv('line', { x1: x(t), x2: x(t), y1: TOP - 6, y2: y - 6, class: 'tl-grid' }),
        sv('text', { x: x(t), y: TOP - 10, 'text-anchor': 'middle', class: 'tl-tick' }, `${+t.toFixed(3)} ms`));
    }
    return sv('svg', { id: 'checkpoint-timeline', class: 'timeline', width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-checkpoint-id': detail.id },
      timelineLegend(), grid, rows,
      sv('text', { class: 'tl-axis-label', x: 4, y: TOP - 10 }, 'time since trigger'));
  }
  function timelineRow(v, s, i, y, { x, ROW, BAR, W }) {
    const idx = s.index ?? i, pending = s.status !== 'completed';
    const segs = segmentsOf(s);
    const tip = `${v.name || v.id} #${idx} — ${s.status}${s.aborted ? ' (aborted)' : ''}${s.unaligned_checkpoint ? ', unaligned' : ''}\n` +
      segs.map((g) => `${g.label}: ${fmtDuration(g.len)}`).join('\n') +
      `\nend-to-end: ${fmtDuration(s.end_to_end_duration)}\nstate: ${fmtBytes(s.state_size)}` +
      (s.alignment ? `\nalignment processed ${fmtBytes(s.alignment.processed)}, persisted ${fmtBytes(s.alignment.persisted)}` : '');
    const g = sv('g', { class: `timeline-subtask${pending ? ' pending' : ''}`, 'data-vertex-id': v.id, 'data-subtask': idx, 'data-status': s.status, transform: `translate(0,${y})` },
      sv('title', {}, tip),
      sv('rect', { class: 'tl-band', x: 0, y: 0, width: W, height: ROW }),
      sv('text', { class: 'tl-label', x: 16, y: ROW - 4 }, `#${idx}`));
    if (pending && !s.end_to_end_duration) {
      g.append(sv('text', { class: 'tl-pending', x: x(0) + 4, y: ROW - 4 }, s.aborted ? 'aborted' : 'pending'));
      return g;
    }
    const by = (ROW - BAR) / 2;
    segs.forEach((seg) => {
      if (seg.len <= 0) return;
      g.append(sv('rect', { class: `seg seg-${seg.key}`, x: x(seg.from), y: by, width: Math.max(1, x(seg.from + seg.len) - x(seg.from)), height: BAR, fill: seg.color }));
    });
    if (isNum(s.end_to_end_duration) && s.end_to_end_duration > 0) {
      const ax = x(s.end_to_end_duration);
      g.append(sv('line', { class: 'tl-ack', x1: ax, x2: ax, y1: 1, y2: ROW - 1 }));
    }
    return g;
  }
  function timelineLegend() {
    const g = sv('g', { class: 'tl-legend', transform: 'translate(4,6)' });
    let lx = 0;
    SEG.forEach((s) => {
      g.append(sv('rect', { x: lx, y: 0, width: 12, height: 10, fill: s.color }), sv('text', { x: lx + 16, y: 9 }, s.label));
      lx += 24 + s.label.length * 7;
    });
    g.append(sv('line', { class: 'tl-ack', x1: lx + 5, x2: lx + 5, y1: -1, y2: 11 }), sv('text', { x: lx + 12, y: 9 }, 'acknowledged (end-to-end)'));
    return g;
  }

  // ---------------------------------------------------------------- exceptions
  function renderExceptions(ex) {
    if (!changed('ex', ex)) return;
    const wrap = $('exceptions-wrap');
    const h = ex && ex.exceptionHistory;
    const entries = ((h && h.entries) || []).slice().sort((a, b) => (b.timestamp || 0) - (a.timestamp || 0));
    if (entries.length === 0) { wrap.replaceChildren(el('p', { class: 'muted' }, 'No exceptions.')); return; }
    fill(wrap,
      entries.map((e) => {
        const key = `${e.timestamp}|${e.exceptionName}|${e.taskName}`;
        const d = el('details', { class: 'exception', open: S.openEx.has(key), 'data-timestamp': e.timestamp },
          el('summary', {}, el('span', { class: 'ex-time' }, fmtTime(e.timestamp)), ' ',
            el('span', { class: 'ex-task' }, e.taskName || '(job)'), ' ', el('code', { class: 'ex-name' }, e.exceptionName)),
          el('pre', { class: 'stacktrace' }, e.stacktrace || '(no stack trace)'));
        d.addEventListener('toggle', () => (d.open ? S.openEx.add(key) : S.openEx.delete(key)));
        return d;
      }),
      h.truncated ? el('p', { class: 'muted' }, 'Older exceptions were truncated.') : null);
  }

  // ---------------------------------------------------------------- start
  function start() {
    if (typeof dagre === 'undefined') showError('dagre.min.js did not load; the job graph cannot be drawn.');
    $('live-indicator').addEventListener('click', togglePause);
    $('token-form').addEventListener('submit', onTokenSubmit);
    window.addEventListener('hashchange', onRoute);
    window.addEventListener('resize', redrawTimeline);
    setIndicator(S.paused ? 'paused' : 'connecting');
    onRoute();
  }
  start();
})();
