// Browser test of the dashboard: a real `baton run --dashboard` with a sleep pipeline, the page
// driven by playwright-core in Debian's chromium (headless, no browser download). Asserts that
// every job is shown, the timeline draws one bar per attempt, live updates arrive without a
// reload, and that no request leaves 127.0.0.1. Saves screenshots under $BATON_BINARY_DIR.
//   BATON_BINARY_DIR=build node tests/browser/dashboard.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const binaryDir = process.env.BATON_BINARY_DIR;
if (!binaryDir) throw new Error('set BATON_BINARY_DIR to the build folder');
const baton = path.join(binaryDir, 'src', 'cli', 'baton');
const CHROMIUM = '/usr/bin/chromium';

// playwright-core only (never the `playwright` package, which downloads browsers).
if (!existsSync(path.join(here, 'node_modules', 'playwright-core')))
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: here, stdio: 'inherit' });
const { chromium } = await import('playwright-core');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const PIPELINE = `name: browser-demo
prefetch: 1
steps:
  - name: download
    uses: sleep
    with: {seconds: 0.6}
    resources: {download_slot: 1}
  - name: analyze
    uses: sleep
    with: {seconds: 1.5}
    resources: {gpu: 1}
    placement: {same_node_as: download}
  - name: summarize
    uses: sleep
    with: {seconds: 0.4, fail_attempts: 1}
    retries: 1
    backoff: 0.2
    resources: {cpu: 1}
`;
const CLUSTER = `nodes:
  - {name: gpu-a, cpus: 4, gpus: 2, resources: {download_slot: 2}, labels: {role: head}}
  - {name: gpu-b, cpus: 4, gpus: 1, resources: {download_slot: 1}, labels: {role: worker}}
`;
const JOBS = 9;

test('dashboard shows a live run, from this machine only', { timeout: 150000 }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'baton-browser-'));
  writeFileSync(path.join(work, 'pipeline.yaml'), PIPELINE);
  writeFileSync(path.join(work, 'cluster.yaml'), CLUSTER);
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const proc = spawn(baton, ['run', path.join(work, 'pipeline.yaml'), '--cluster', path.join(work, 'cluster.yaml'),
    '--jobs', String(JOBS), '--out', path.join(work, 'out'), '--dashboard', `127.0.0.1:${port}`,
    '--log-format', 'none', '--progress', 'never'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let browser;
  try {
    await waitFor(() => stderr.includes(`dashboard at ${origin}/`), 20000, () => `no dashboard URL printed:\n${stderr}`);

    browser = await chromium.launchPersistentContext(path.join(work, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
    });
    const page = browser.pages()[0] || await browser.newPage();
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

    await page.goto(origin + '/');
    // Every job is shown, each with its step chain.
    await page.waitForFunction((n) => document.querySelectorAll('tr[data-job]').length === n, JOBS);
    assert.equal(await page.locator('tr[data-job] .step[data-step="analyze"]').count(), JOBS);
    const firstStates = await page.$$eval('tr[data-job]', (rows) => rows.map((r) => r.dataset.state));
    assert.ok(firstStates.some((s) => s !== 'succeeded'), `the run ended before the page loaded: ${firstStates}`);

    // Live: the rows change state without a reload, and events keep arriving.
    const events0 = Number(await page.evaluate(() => document.body.dataset.events || 0));
    await page.waitForFunction((before) => Number(document.body.dataset.events || 0) > before + 3, events0);
    await page.waitForFunction(() => [...document.querySelectorAll('tr[data-job]')].some((r) => r.dataset.state === 'succeeded'));
    await page.waitForFunction(() => document.querySelector('#timeline rect[data-attempt].running') !== null ||
      [...document.querySelectorAll('tr[data-job]')].every((r) => r.dataset.state === 'succeeded'));
    await page.screenshot({ path: shot('dashboard-running.png'), fullPage: true });

    // After the run: every job succeeded, the page says the run finished, and the timeline has
    // one bar per attempt (jobs.jsonl, one job per line, counts them; summary.json points to it).
    await page.waitForFunction((n) => [...document.querySelectorAll('tr[data-job]')].filter((r) => r.dataset.state === 'succeeded').length === n,
      JOBS, { timeout: 60000 });
    await page.waitForFunction(() => !document.getElementById('banner').hidden);
    assert.match(await page.textContent('#banner'), /Run finished/);
    const summary = JSON.parse(readFileSync(path.join(work, 'out', 'summary.json'), 'utf8'));
    assert.equal(summary.succeeded, JOBS);
    const jobs = readFileSync(path.join(work, 'out', summary.jobs_file), 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
    assert.equal(jobs.length, JOBS);
    const attempts = jobs.reduce((n, j) => n + j.attempts.length, 0);
    assert.equal(attempts, JOBS * 4);  // download, analyze, summarize failing once then ok
    await page.waitForFunction((n) => document.querySelectorAll('#timeline rect[data-attempt]').length === n, attempts);
    assert.equal(Number(await page.getAttribute('#timeline', 'data-bars')), attempts);
    assert.equal(await page.locator('#timeline rect[data-attempt].failed').count(), JOBS);
    // Lanes: one per GPU (3) plus packed CPU rows; a GPU attempt sits in its GPU's lane.
    const labels = await page.$$eval('#timeline .lane-label', (ts) => ts.map((t) => t.textContent));
    for (const l of ['gpu-a · gpu0', 'gpu-a · gpu1', 'gpu-b · gpu0', 'gpu-a · cpu', 'gpu-b · cpu']) assert.ok(labels.includes(l), `${l} in ${labels}`);
    // Charts drew their lines; nodes are listed with their GPUs.
    assert.equal(await page.locator('#chart-gpu path[data-series="gpu"]').count(), 1);
    assert.equal(await page.locator('#nodes [data-node]').count(), 2);
    assert.equal(await page.locator('#nodes .gpu').count(), 3);
    await page.screenshot({ path: shot('dashboard.png'), fullPage: true });

    // Hover details and zoom.
    const bar = page.locator('#timeline rect[data-attempt]').first();
    await bar.hover();
    await page.waitForFunction(() => !document.getElementById('tip').hidden);
    assert.match(await page.textContent('#tip'), /job-\d+ · \w+ #\d/);
    const before = await bar.getAttribute('width');
    await page.click('#zoom-in');
    await page.waitForFunction((w) => document.querySelector('#timeline rect[data-attempt]').getAttribute('width') !== w, before);

    // The job page: attempts with their status, and the log area.
    await page.click('tr[data-job="job-0"]');
    await page.waitForFunction(() => document.querySelectorAll('#job-body table tr').length > 1);
    const rows = await page.$$eval('#job-body table tr', (trs) => trs.slice(1).map((tr) => tr.textContent));
    assert.equal(rows.filter((r) => r.startsWith('summarize')).length, 2);
    assert.match(await page.textContent('#job-title'), /job-0 · succeeded/);
    await page.screenshot({ path: shot('dashboard-job.png') });

    // Nothing left the machine, and the page had no errors.
    assert.ok(requests.length > 3);
    for (const u of requests) assert.ok(u.startsWith(origin + '/'), `request left the dashboard: ${u}`);
    assert.deepEqual(errors, []);

    await browser.close();
    browser = null;
    await waitFor(() => stderr.includes('dashboard still serving'), 10000, () => stderr);
    proc.kill('SIGINT');
    const { code } = await exited;
    assert.equal(code, 0, stderr);
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited; }
    rmSync(work, { recursive: true, force: true });
  }
});

test('dashboard pages through 100,000 jobs', { timeout: 150000 }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'baton-browser-'));
  const MANY = 100000;
  // Long steps on 4 CPUs: the run stays live with 4 jobs running while the page is used.
  writeFileSync(path.join(work, 'pipeline.yaml'), 'name: many\nsteps:\n  - {name: wait, uses: sleep, with: {seconds: 120}, resources: {cpu: 1}}\n');
  writeFileSync(path.join(work, 'cluster.yaml'), 'nodes:\n  - {name: n, cpus: 4}\n');
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const proc = spawn(baton, ['run', path.join(work, 'pipeline.yaml'), '--cluster', path.join(work, 'cluster.yaml'),
    '--jobs', String(MANY), '--out', path.join(work, 'out'), '--dashboard', `127.0.0.1:${port}`,
    '--log-format', 'none', '--progress', 'never'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let browser;
  try {
    await waitFor(() => stderr.includes(`dashboard at ${origin}/`), 60000, () => `no dashboard URL printed:\n${stderr}`);
    browser = await chromium.launchPersistentContext(path.join(work, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
    });
    const page = browser.pages()[0] || await browser.newPage();
    const sizes = {};
    page.on('response', async (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/api/jobs') && !u.pathname.startsWith('/api/jobs/')) {
        try { sizes.jobs = Math.max(sizes.jobs || 0, (await r.body()).length); } catch (_) { /* navigated away */ }
      }
    });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const t0 = Date.now();
    await page.goto(origin + '/');
    // One page of rows, the counts of all 100,000, and the pager.
    await page.waitForFunction(() => document.querySelectorAll('tr[data-job]').length === 50);
    await page.waitForFunction((n) => document.getElementById('page').textContent === `1–50 of ${n}`, MANY);
    console.log(`# 100,000 jobs: first page of rows shown ${Date.now() - t0} ms after navigation`);
    assert.match(await page.textContent('#counts'), /100000/);
    assert.equal(await page.getAttribute('tr[data-job]:first-child', 'data-job'), 'job-0');
    await page.click('#next');
    await page.waitForFunction((n) => document.getElementById('page').textContent === `51–100 of ${n}`, MANY);
    assert.equal(await page.getAttribute('tr[data-job]:first-child', 'data-job'), 'job-50');
    await page.click('#prev');
    await page.waitForFunction(() => document.querySelector('tr[data-job]:first-child').dataset.job === 'job-0');
    // Live: running jobs show as such without a reload.
    await page.waitForFunction(() => [...document.querySelectorAll('tr[data-job]')].some((r) => r.dataset.state === 'running'));
    // What the browser got stays small: one page of jobs, a bounded first message.
    assert.ok(sizes.jobs > 0 && sizes.jobs < 100000, `a jobs page of ${sizes.jobs} bytes`);
    const first = await page.evaluate(async () => {
      const text = await new Promise((resolve) => {
        const es = new EventSource('/api/events');
        es.onmessage = (m) => { es.close(); resolve(m.data); };
      });
      return { bytes: text.length, total: JSON.parse(text).total, hasJobs: 'jobs' in JSON.parse(text) };
    });
    assert.equal(first.total, MANY);
    assert.equal(first.hasJobs, false);
    assert.ok(first.bytes < 64 * 1024, `first live message of ${first.bytes} bytes`);
    console.log(`# 100,000 jobs: first live message ${first.bytes} bytes, largest jobs page ${sizes.jobs} bytes`);
    await page.screenshot({ path: shot('dashboard-100k.png') });
    assert.deepEqual(errors, []);
    await browser.close();
    browser = null;
    proc.kill('SIGTERM');
    await exited;
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited; }
    rmSync(work, { recursive: true, force: true });
  }
});

function shot(name) {
  const dir = path.join(binaryDir, 'screenshots');
  mkdirSync(dir, { recursive: true });
  return path.join(dir, name);
}

async function waitFor(pred, ms, why) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(why());
    await new Promise((r) => setTimeout(r, 50));
  }
}
