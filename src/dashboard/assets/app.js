// Baton dashboard: one page, no framework. State comes from /api/events (Server-Sent Events:
// a snapshot first, then one JSON event per message) and from the JSON API for the paged jobs
// table, the nodes and a job's detail. Everything is drawn here (SVG), nothing is fetched from
// anywhere but this server.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const STATES = ['ready', 'backoff', 'running', 'succeeded', 'failed', 'cancelled'];

const S = {
  pipeline: '', time: 0, timeAt: performance.now(), finished: false,
  nodes: [], bars: new Map(), series: [], counts: {},
  tokenRequired: false, authorised: true,
  filter: '', q: '', offset: 0, limit: 50, total: 0, jobs: [],
  openJob: null, events: 0,
  view: { live: true, t0: 0, t1: 60 },
};

// ---------- helpers
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}
function sv(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function hash(s) { let h = 2166136261; for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return h >>> 0; }
function jobColour(job) { const h = hash(job); return `hsl(${h % 360}, ${55 + (h >> 9) % 25}%, ${50 + (h >> 17) % 12}%)`; }
function fmtSec(s) {
  if (s === undefined || s === null || isNaN(s)) return '';
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + 's';
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  return m < 60 ? `${m}m${String(r).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
function now() { return S.finished ? S.time : S.time + (performance.now() - S.timeAt) / 1000; }
function setTime(t) { if (t > S.time) { S.time = t; S.timeAt = performance.now(); } }
async function getJson(url) {
  const r = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}
// Runs fn at most once per `ms`, the last call winning.
function throttle(fn, ms) {
  let timer = null, again = false;
  return function run() {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(() => { timer = null; if (again) { again = false; run(); } }, ms);
  };
}
function frame(fn) { let queued = false; return () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; fn(); }); } }; }

// ---------- live events
function barKey(e) { return `${e.job}/${e.step}/${e.attempt}`; }
function applySnapshot(s) {
  S.pipeline = s.pipeline || '';
  S.time = s.time || 0; S.timeAt = performance.now();
  S.nodes = s.nodes || [];
  S.tokenRequired = !!s.token_required;
  S.bars.clear();
  for (const a of s.attempts || []) S.bars.set(barKey(a), a);
  S.series = s.series || [];
  S.counts = s.counts || {};
  $('pipeline').textContent = S.pipeline;
  renderCounts(); renderNodes(); drawTimeline(); drawCharts(); refreshJobs(); refreshAuth();
}
function onEvent(e) {
  S.events++;
  document.body.dataset.events = S.events;
  if (e.type === 'snapshot') return applySnapshot(e);
  if (e.type === 'sample') { S.series.push(e); if (S.series.length > 3600) S.series.shift(); setTime(e.t); return drawCharts(); }
  if (typeof e.time === 'number') setTime(e.time);
  switch (e.type) {
    case 'attempt_started':
      S.bars.set(barKey(e), { job: e.job, step: e.step, node: e.node, attempt: e.attempt, gpus: e.gpus || [], start: e.time, status: 'running' });
      drawTimeline(); refreshJobs(); refreshNodes(); break;
    case 'attempt_finished': {
      const b = S.bars.get(barKey(e));
      if (b) { b.end = e.time; b.status = e.status; if (e.message) b.error = e.message; }
      drawTimeline(); refreshJobs(); refreshNodes(); break;
    }
    case 'job_submitted': case 'job_succeeded': case 'job_failed': case 'job_cancelled': case 'retry_scheduled':
      refreshJobs(); break;
    case 'node_joined': case 'node_lost': refreshNodes(); break;
    case 'run_finished':
      S.finished = true;
      showBanner(`Run finished in ${fmtSec(e.time)}: ${e.message}. The dashboard keeps serving it until Ctrl-C.`);
      refreshJobs(); refreshNodes(); drawTimeline(); break;
    case 'log':
      if (S.openJob === e.job) appendLog(e);
      break;
  }
  if (S.openJob && e.job === S.openJob && e.type !== 'log') refreshDrawer();
}
function connect() {
  const es = new EventSource('/api/events');
  es.onopen = () => { $('live').textContent = 'live'; $('live').classList.remove('off'); };
  es.onerror = () => { $('live').textContent = 'reconnecting'; $('live').classList.add('off'); };
  es.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (err) { console.error(err); } };
}
function showBanner(text) { const b = $('banner'); b.textContent = text; b.hidden = false; }

// ---------- header
function renderCounts() {
  const box = $('counts');
  box.replaceChildren();
  const total = Object.values(S.counts).reduce((a, b) => a + b, 0);
  box.append(el('span', { class: 'chip' + (S.filter === '' ? ' active' : ''), onclick: () => setFilter('') }, el('b', { text: total }), ' jobs'));
  for (const st of STATES) {
    if (!S.counts[st]) continue;
    box.append(el('span', { class: 'chip' + (S.filter === st ? ' active' : ''), onclick: () => setFilter(st) }, el('b', { text: S.counts[st] }), ' ' + st));
  }
  if (S.llm && S.llm.requests > 0)
    box.append(el('span', { id: 'llm-total', class: 'chip', title: `${S.llm.requests} LLM requests, ${S.llm.prompt_tokens} prompt + ${S.llm.completion_tokens} completion tokens` },
      el('b', { text: fmtUsd(S.llm.cost_usd) }), ` · ${S.llm.prompt_tokens + S.llm.completion_tokens} tokens`));
}
// USD with enough digits for the cents of a cheap model's summary.
function fmtUsd(v) { return '$' + (v >= 1 ? v.toFixed(2) : v.toFixed(4)); }
async function refreshAuth() {
  try {
    const a = await getJson('/api/auth');
    S.tokenRequired = a.token_required; S.authorised = a.authorised;
  } catch (_) { /* keep the last known */ }
  $('auth').hidden = !(S.tokenRequired && !S.authorised);
  renderJobs();
}
$('auth').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  if (!t) return;
  // In the body, never in a URL: the server answers with an HttpOnly cookie.
  const r = await fetch('/api/auth', {method: 'POST', headers: {'Content-Type': 'text/plain'}, body: t});
  $('token').value = '';
  if (!r.ok) $('token').placeholder = 'wrong token';
  refreshAuth();
});
setInterval(() => { $('clock').textContent = S.time > 0 ? 't = ' + fmtSec(now()) : ''; }, 500);

// ---------- jobs table
function setFilter(st) { S.filter = st; S.offset = 0; renderCounts(); renderFilters(); refreshJobs(); }
function renderFilters() {
  const box = $('filters');
  box.replaceChildren();
  for (const st of [''].concat(STATES))
    box.append(el('button', { class: S.filter === st ? 'active' : '', text: st || 'all', onclick: () => setFilter(st) }));
}
const refreshJobs = throttle(async () => {
  const p = new URLSearchParams({ offset: S.offset, limit: S.limit });
  if (S.filter) p.set('state', S.filter);
  if (S.q) p.set('q', S.q);
  try {
    const r = await getJson('/api/jobs?' + p);
    S.jobs = r.jobs; S.total = r.total; S.counts = r.counts; S.pipeline = r.pipeline; S.llm = r.llm; setTime(r.time);
    renderJobs(); renderCounts();
  } catch (err) { console.error(err); }
}, 400);
function stepWhy(st, prev, job) {
  switch (st.state) {
    case 'done': return st.node ? `done on ${st.node}` : 'done';
    case 'running': return (st.wait && st.wait.startsWith('waiting for ') ? st.wait + ' · ' : '') + `attempt ${st.attempt} on ${st.node}`;
    case 'ready': case 'backoff': return (st.wait || 'waiting') + (st.attempt > 1 ? ` · attempt ${st.attempt}` : '');
    case 'failed': return `failed · attempt ${st.attempt}` + (st.node ? ` on ${st.node}` : '');
    case 'cancelled': return 'cancelled';
    case 'pending': return job.state === 'failed' || job.state === 'cancelled' ? 'not run' : `waiting for ${prev}`;
  }
  return st.wait || st.state;
}
function actionButtons(job, small) {
  const can = !S.tokenRequired || S.authorised;
  const title = can ? '' : 'needs the dashboard token';
  const out = [];
  if (!['succeeded', 'failed', 'cancelled'].includes(job.state))
    out.push(el('button', { class: 'danger', text: 'cancel', disabled: !can, title, 'data-action': 'cancel', onclick: (ev) => { ev.stopPropagation(); act(job.id, 'cancel'); } }));
  if (job.state === 'failed' && !S.finished)
    out.push(el('button', { text: 'retry', disabled: !can, title, 'data-action': 'retry', onclick: (ev) => { ev.stopPropagation(); act(job.id, 'retry'); } }));
  return out;
}
async function act(id, what) {
  const r = await fetch(`/api/jobs/${encodeURIComponent(id)}/${what}`, { method: 'POST', credentials: 'same-origin' });
  if (!r.ok) { const b = await r.json().catch(() => ({})); showBanner(`${what} ${id}: ${b.error || r.status}`); }
  refreshJobs(); if (S.openJob === id) refreshDrawer();
}
function renderJobs() {
  const body = $('jobs');
  const rows = S.jobs.map((j) => {
    const chain = el('div', { class: 'chain' });
    j.steps.forEach((st, i) => chain.append(el('div', { class: 'step ' + st.state, 'data-step': st.name, 'data-state': st.state },
      el('div', { class: 'name', text: st.name }), el('div', { class: 'why', text: stepWhy(st, i > 0 ? j.steps[i - 1].name : '', j) }))));
    const sw = el('span', { class: 'swatch' });
    sw.style.background = jobColour(j.id);
    return el('tr', { 'data-job': j.id, 'data-state': j.state, onclick: () => openJob(j.id) },
      el('td', {}, sw, j.id), el('td', { class: 'input', text: j.input || '—', title: j.input }),
      el('td', {}, el('span', { class: 'state ' + j.state, text: j.state }), j.error ? el('div', { class: 'why error', text: j.error }) : null,
        j.llm ? el('div', { class: 'why llm', text: `${fmtUsd(j.llm.cost_usd)} · ${j.llm.prompt_tokens + j.llm.completion_tokens} tokens` }) : null),
      el('td', {}, chain), el('td', {}, ...actionButtons(j)));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'no jobs' + (S.filter ? ` in state ${S.filter}` : '') })));
  body.replaceChildren(...rows);
  const last = Math.min(S.offset + S.limit, S.total);
  $('page').textContent = S.total ? `${S.offset + 1}–${last} of ${S.total}` : '';
  $('prev').disabled = S.offset === 0;
  $('next').disabled = last >= S.total;
}
$('prev').onclick = () => { S.offset = Math.max(0, S.offset - S.limit); refreshJobs(); };
$('next').onclick = () => { S.offset += S.limit; refreshJobs(); };
$('search').addEventListener('input', (ev) => { S.q = ev.target.value.trim(); S.offset = 0; refreshJobs(); });

// ---------- job drawer
function openJob(id) { S.openJob = id; $('drawer').hidden = false; location.hash = 'job=' + encodeURIComponent(id); refreshDrawer(); }
function closeJob() { S.openJob = null; $('drawer').hidden = true; history.replaceState(null, '', location.pathname); }
$('close').onclick = closeJob;
document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeJob(); });
const refreshDrawer = throttle(async () => {
  const id = S.openJob;
  if (!id) return;
  let j;
  try { j = await getJson('/api/jobs/' + encodeURIComponent(id)); } catch (err) { $('job-body').textContent = String(err); return; }
  if (S.openJob !== id) return;
  $('job-title').textContent = `${j.id} · ${j.state}`;
  $('job-actions').replaceChildren(...actionButtons(j));
  const body = [];
  body.push(el('p', {}, el('span', { class: 'muted', text: 'input ' }), j.input || '—'));
  if (j.error) body.push(el('p', { class: 'error', text: j.error }));
  const links = [];
  if (j.report && j.report.html) links.push(el('a', { href: j.report.html, target: '_blank', text: 'report.html' }));
  if (j.report && j.report.markdown) links.push(el('a', { href: j.report.markdown, target: '_blank', text: 'report.md' }));
  if (links.length) body.push(el('p', {}, 'Report: ', ...links.flatMap((a, i) => (i ? [' · ', a] : [a]))));
  const chain = el('div', { class: 'chain' });
  j.steps.forEach((st, i) => chain.append(el('div', { class: 'step ' + st.state }, el('div', { class: 'name', text: st.name }),
    el('div', { class: 'why', text: stepWhy(st, i > 0 ? j.steps[i - 1].name : '', j) }))));
  body.push(chain);
  body.push(el('h3', { text: 'Attempts' }));
  const t = el('table', {}, el('tr', {}, ...['step', 'attempt', 'node', 'gpus', 'start', 'duration', 'status'].map((h) => el('th', { text: h }))));
  for (const a of j.attempts) {
    const end = a.end !== undefined ? a.end : now();
    t.append(el('tr', {}, el('td', { text: a.step }), el('td', { text: a.attempt }), el('td', { text: a.node }),
      el('td', { text: (a.gpus || []).join(',') || '—' }), el('td', { text: fmtSec(a.start) }), el('td', { text: fmtSec(end - a.start) }),
      el('td', {}, el('span', { class: 'state ' + (a.status === 'ok' ? 'succeeded' : a.status), text: a.status }), a.error ? el('div', { class: 'error', text: a.error }) : null)));
    for (const s of ['stdout', 'stderr'])
      if (a[s + '_tail']) t.append(el('tr', {}, el('td', { colspan: 7 }, el('details', {}, el('summary', { text: `${a.step} #${a.attempt} ${s}` }), el('pre', { class: 'log', text: a[s + '_tail'] })))));
  }
  body.push(t);
  body.push(el('h3', { text: 'Log' }));
  const log = el('pre', { class: 'log', id: 'job-log' });
  log.textContent = (j.log || []).map(logLine).join('\n') || '(no log lines yet)';
  body.push(log);
  if (j.progress) body.push(el('p', { class: 'muted', text: 'progress ' + JSON.stringify(j.progress) }));
  if (j.results && Object.keys(j.results).length)
    body.push(el('details', {}, el('summary', { text: 'results' }), el('pre', { class: 'log', text: JSON.stringify(j.results, null, 2) })));
  $('job-body').replaceChildren(...body);
}, 300);
function logLine(l) { return `${fmtSec(l.time).padStart(7)} ${l.step}#${l.attempt} ${l.level || l.status || ''}: ${l.message}`; }
function appendLog(e) {
  const log = $('job-log');
  if (!log) return;
  if (log.textContent === '(no log lines yet)') log.textContent = '';
  log.textContent += (log.textContent ? '\n' : '') + logLine(e);
  log.scrollTop = log.scrollHeight;
}

// ---------- nodes
const refreshNodes = throttle(async () => {
  try { S.nodes = (await getJson('/api/nodes')).nodes; renderNodes(); drawTimeline(); } catch (err) { console.error(err); }
}, 1000);
function renderNodes() {
  const box = $('nodes');
  box.replaceChildren(...S.nodes.map((n) => {
    const card = el('div', { class: 'node' + (n.alive === false ? ' down' : ''), 'data-node': n.name },
      el('h3', { text: n.name + (n.alive === false ? ' (lost)' : '') }),
      el('div', {}, ...Object.entries(n.labels || {}).map(([k, v]) => el('span', { class: 'label', text: `${k}: ${v}` }))));
    for (const [res, total] of Object.entries(n.total || {})) {
      const used = (n.used || {})[res] || 0;
      const bar = el('div');
      bar.style.width = (total > 0 ? Math.min(100, 100 * used / total) : 0) + '%';
      const show = (x) => res === 'memory' ? (x / 2 ** 30).toFixed(1) + 'Gi' : +x.toFixed(2);
      card.append(el('div', { class: 'res' }, el('span', { text: res }), el('div', { class: 'meter' }, bar), el('span', { class: 'muted', text: `${show(used)} / ${show(total)}` })));
    }
    if ((n.gpus || []).length)
      card.append(el('div', { class: 'gpus' }, ...n.gpus.map((g) => el('div', { class: 'gpu' + (g.busy ? ' busy' : ''), text: 'gpu' + g.id }))));
    // Resident workers (uses: worker): state, items in it, served, restarts, load time.
    for (const w of n.workers || []) {
      const parts = [`${w.step} #${w.worker}`, w.state || 'placed', `gpu ${(w.gpus || []).join(',') || '—'}`,
        `${w.items} in batch`];
      if (w.items_served !== undefined) parts.push(`${w.items_served} served`);
      if (w.restarts) parts.push(`${w.restarts} restarts`);
      if (w.load_seconds) parts.push(`loaded in ${(+w.load_seconds).toFixed(1)}s`);
      card.append(el('div', { class: 'worker muted', 'data-worker': String(w.worker), text: 'worker ' + parts.join(' · ') }));
    }
    return card;
  }));
}

// ---------- timeline (Gantt): lanes per node GPU, plus packed rows for attempts without GPUs
const LABEL_W = 130, ROW_H = 18, AXIS_H = 20;
function lanesAndRows(bars) {
  const lanes = [];  // {label, key}
  const index = new Map();
  const nodes = S.nodes.map((n) => n.name);
  for (const b of bars) if (!nodes.includes(b.node)) nodes.push(b.node);
  const byNode = new Map(nodes.map((n) => [n, []]));
  for (const b of bars) byNode.get(b.node).push(b);
  const placed = new Map();  // bar -> lane indices
  for (const name of nodes) {
    const info = S.nodes.find((n) => n.name === name);
    const gpuCount = Math.max(info ? (info.gpus || []).length : 0, ...byNode.get(name).flatMap((b) => (b.gpus || []).map((g) => g + 1)), 0);
    for (let g = 0; g < gpuCount; g++) { index.set(`${name}/gpu${g}`, lanes.length); lanes.push({ label: `${name} · gpu${g}`, node: name }); }
    // Attempts without GPUs: greedy interval packing into as few rows as overlap requires.
    const rowsEnd = [];
    const cpuBars = byNode.get(name).filter((b) => !(b.gpus || []).length).sort((a, b) => a.start - b.start);
    const first = lanes.length;
    for (const b of cpuBars) {
      let r = rowsEnd.findIndex((e) => e <= b.start + 1e-9);
      if (r < 0) { r = rowsEnd.length; rowsEnd.push(0); lanes.push({ label: r === 0 ? `${name} · cpu` : '', node: name }); }
      rowsEnd[r] = b.end !== undefined ? b.end : Infinity;
      placed.set(b, [first + r]);
    }
    if (!gpuCount && !cpuBars.length) lanes.push({ label: `${name}`, node: name });
    for (const b of byNode.get(name)) if ((b.gpus || []).length) placed.set(b, b.gpus.map((g) => index.get(`${name}/gpu${g}`)));
  }
  return { lanes, placed };
}
function niceStep(span, px) {
  const target = span / Math.max(2, px / 90);
  const p = 10 ** Math.floor(Math.log10(target));
  for (const m of [1, 2, 5, 10]) if (p * m >= target) return p * m;
  return p * 10;
}
const drawTimeline = frame(() => {
  const svg = $('timeline');
  const width = svg.clientWidth || 900;
  const bars = [...S.bars.values()];
  const t = now();
  const end = Math.max(t, ...bars.map((b) => (b.end !== undefined ? b.end : t)), 1);
  // Live: the whole run while it is under ten minutes, then the last ten minutes.
  if (S.view.live) { S.view.t1 = Math.max(end * 1.02, 5); S.view.t0 = Math.max(0, S.view.t1 - 600); }
  const { lanes, placed } = lanesAndRows(bars);
  const height = AXIS_H + Math.max(1, lanes.length) * ROW_H + 4;
  svg.setAttribute('height', height);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const plotW = width - LABEL_W - 8;
  const { t0, t1 } = S.view;
  const x = (s) => LABEL_W + ((s - t0) / (t1 - t0)) * plotW;
  const kids = [];
  lanes.forEach((l, i) => {
    kids.push(sv('rect', { class: 'lane-bg' + (i % 2 ? ' alt' : ''), x: 0, y: AXIS_H + i * ROW_H, width, height: ROW_H }));
    if (l.label) { const tx = sv('text', { class: 'lane-label', x: 4, y: AXIS_H + i * ROW_H + 13 }); tx.textContent = l.label; kids.push(tx); }
  });
  const step = niceStep(t1 - t0, plotW);
  for (let s = Math.ceil(t0 / step) * step; s <= t1; s += step) {
    kids.push(sv('line', { class: 'grid', x1: x(s), x2: x(s), y1: AXIS_H - 4, y2: height }));
    const tx = sv('text', { x: x(s) + 2, y: 12 }); tx.textContent = fmtSec(s); kids.push(tx);
  }
  const clip = sv('clipPath', { id: 'plot' });
  clip.append(sv('rect', { x: LABEL_W, y: 0, width: plotW + 8, height }));
  kids.push(clip);
  const g = sv('g', { 'clip-path': 'url(#plot)' });
  let count = 0;
  for (const b of bars) {
    const rows = placed.get(b) || [];
    const bEnd = b.end !== undefined ? b.end : t;
    const x0 = x(b.start), w = Math.max(2, x(bEnd) - x0);
    rows.forEach((row, k) => {
      const r = sv('rect', { class: `bar ${b.status}`, x: x0, y: AXIS_H + row * ROW_H + 2, width: w, height: ROW_H - 4, rx: 2, fill: jobColour(b.job) });
      // One counted bar per attempt; a multi-GPU attempt draws its other GPUs as parts.
      r.setAttribute(k === 0 ? 'data-attempt' : 'data-attempt-part', barKey(b));
      r.addEventListener('mousemove', (ev) => showTip(ev, b));
      r.addEventListener('mouseleave', hideTip);
      r.addEventListener('click', () => openJob(b.job));
      g.append(r);
    });
    if (rows.length) count++;
  }
  kids.push(g);
  if (!S.finished) kids.push(sv('line', { class: 'now', x1: x(t), x2: x(t), y1: AXIS_H - 4, y2: height }));
  svg.replaceChildren(...kids);
  svg.dataset.bars = count;
});
function showTip(ev, b) {
  const tip = $('tip');
  const end = b.end !== undefined ? b.end : now();
  tip.textContent = `${b.job} · ${b.step} #${b.attempt}\nnode ${b.node}${(b.gpus || []).length ? ' · gpu ' + b.gpus.join(',') : ''}\n` +
    `start ${fmtSec(b.start)} · ${fmtSec(end - b.start)}${b.end === undefined ? ' so far' : ''}\nstatus ${b.status}${b.error ? '\n' + b.error : ''}`;
  tip.hidden = false;
  tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - 260) + 'px';
  tip.style.top = ev.clientY + 12 + 'px';
}
function hideTip() { $('tip').hidden = true; }
function zoom(factor, at) {
  const { t0, t1 } = S.view;
  const c = at !== undefined ? at : (t0 + t1) / 2;
  const n0 = Math.max(0, c - (c - t0) * factor), n1 = Math.max(n0 + 0.5, c + (t1 - c) * factor);
  S.view = { live: false, t0: n0, t1: n1 };
  $('zoom-live').classList.remove('on');
  drawTimeline();
}
function timeAtX(clientX) {
  const svg = $('timeline'), r = svg.getBoundingClientRect();
  const plotW = r.width - LABEL_W - 8;
  return S.view.t0 + ((clientX - r.left - LABEL_W) / plotW) * (S.view.t1 - S.view.t0);
}
$('timeline').addEventListener('wheel', (ev) => { ev.preventDefault(); zoom(ev.deltaY > 0 ? 1.25 : 0.8, timeAtX(ev.clientX)); }, { passive: false });
$('zoom-in').onclick = () => zoom(0.6);
$('zoom-out').onclick = () => zoom(1.6);
$('zoom-fit').onclick = () => {
  const bars = [...S.bars.values()];
  const end = Math.max(now(), ...bars.map((b) => (b.end !== undefined ? b.end : now())), 1);
  S.view = { live: false, t0: 0, t1: end * 1.02 }; $('zoom-live').classList.remove('on'); drawTimeline();
};
$('zoom-live').onclick = () => { S.view.live = true; $('zoom-live').classList.add('on'); drawTimeline(); };
(() => {  // drag to pan
  let drag = null;
  const svg = $('timeline');
  svg.addEventListener('mousedown', (ev) => { drag = { x: ev.clientX, t0: S.view.t0, t1: S.view.t1 }; });
  window.addEventListener('mouseup', () => { drag = null; });
  window.addEventListener('mousemove', (ev) => {
    if (!drag) return;
    const plotW = svg.getBoundingClientRect().width - LABEL_W - 8;
    const dt = ((drag.x - ev.clientX) / plotW) * (drag.t1 - drag.t0);
    if (Math.abs(ev.clientX - drag.x) < 3) return;
    const shift = Math.max(-drag.t0, dt);
    S.view = { live: false, t0: drag.t0 + shift, t1: drag.t1 + shift };
    $('zoom-live').classList.remove('on');
    drawTimeline();
  });
})();

// ---------- charts
function lineChart(svg, points, series, yMax, yFmt) {
  const w = svg.clientWidth || 400, h = svg.clientHeight || 140;
  const L = 38, R = 8, T = 8, B = 18;
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  const kids = [];
  const tMax = Math.max(1, ...points.map((p) => p.t));
  const x = (t) => L + (t / tMax) * (w - L - R);
  const y = (v) => h - B - (v / (yMax || 1)) * (h - T - B);
  kids.push(sv('line', { class: 'axis', x1: L, x2: w - R, y1: h - B, y2: h - B }));
  for (const f of [0, 0.5, 1]) {
    kids.push(sv('line', { class: 'axis', x1: L, x2: w - R, y1: y(yMax * f), y2: y(yMax * f) }));
    const tx = sv('text', { x: 2, y: y(yMax * f) + 3 }); tx.textContent = yFmt(yMax * f); kids.push(tx);
  }
  const step = niceStep(tMax, w - L - R);
  for (let s = 0; s <= tMax; s += step) { const tx = sv('text', { x: x(s) - 6, y: h - 4 }); tx.textContent = fmtSec(s); kids.push(tx); }
  for (const s of series) {
    if (!points.length) continue;
    let d = `M ${x(points[0].t)} ${y(s.value(points[0]))}`;
    for (const p of points.slice(1)) d += ` L ${x(p.t)} ${y(s.value(p))}`;
    if (s.fill) kids.push(sv('path', { d: d + ` L ${x(points[points.length - 1].t)} ${y(0)} L ${x(points[0].t)} ${y(0)} Z`, fill: s.fill, stroke: 'none' }));
    kids.push(sv('path', { d, fill: 'none', stroke: s.colour, 'stroke-width': 1.8, 'data-series': s.name }));
  }
  svg.replaceChildren(...kids);
}
const drawCharts = frame(() => {
  const pts = S.series;
  const ended = (p) => p.succeeded + p.failed + p.cancelled;
  const maxEnded = Math.ceil(Math.max(2, ...pts.map(ended)) / 2) * 2;  // even: the mid tick stays whole
  lineChart($('chart-throughput'), pts, [
    { name: 'ended', value: ended, colour: '#6b7480' },
    { name: 'succeeded', value: (p) => p.succeeded, colour: '#2f9e5b', fill: 'rgba(47,158,91,.12)' },
    { name: 'failed', value: (p) => p.failed, colour: '#d64545' },
  ], maxEnded, (v) => Math.round(v));
  if (pts.length > 1) {
    const last = pts[pts.length - 1];
    const back = pts.find((p) => p.t >= last.t - 30) || pts[0];
    const rate = last.t > back.t ? ((ended(last) - ended(back)) / (last.t - back.t)) * 60 : 0;
    $('rate').textContent = `${ended(last)} ended · ${rate.toFixed(1)}/min over the last ${fmtSec(last.t - back.t)}`;
  }
  lineChart($('chart-gpu'), pts, [
    { name: 'gpu', value: (p) => (p.gpu_total ? (100 * p.gpu_busy) / p.gpu_total : 0), colour: '#2f6fde', fill: 'rgba(47,111,222,.15)' },
  ], 100, (v) => Math.round(v) + '%');
  const last = pts[pts.length - 1];
  if (last) $('gpu-now').textContent = last.gpu_total ? `${last.gpu_busy} of ${last.gpu_total} busy · ${last.running} attempts running` : `no GPUs · ${last.running} attempts running`;
});

// ---------- start
window.addEventListener('resize', () => { drawTimeline(); drawCharts(); });
setInterval(() => { if (!S.finished) { drawTimeline(); refreshJobs(); } }, 1000);
renderFilters();
connect();
refreshAuth();
const m = location.hash.match(/^#job=(.+)$/);
if (m) openJob(decodeURIComponent(m[1]));
