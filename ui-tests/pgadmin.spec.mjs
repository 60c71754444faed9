// Operates ecommerce_ingest from real pgAdmin 4 in headless Debian Chromium (playwright-core).
// Run by scripts/pgadmin-test.sh, which starts the cluster, the feeder and pgAdmin and sets:
//   PGA_URL, PGA_EMAIL, PGA_PASSWORD  pgAdmin (server mode) and its login
//   PGA_SERVER                        name of the pre-registered server
//   PGPORT                            the cluster's port, for the independent psql checks
//   SHOTS_DIR                         where the pgadmin-*.png screenshots go (docs/img)
//   CHROME_DATA                       a fresh Chromium user-data-dir
//   FAIL_DIR                          where a screenshot of a failure goes (optional)
// Every step is an assertion; the first that fails stops the run with exit code 1.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';

const env = (name, dflt) => {
  const v = process.env[name] ?? dflt;
  if (v === undefined) throw new Error(`environment variable ${name} is not set`);
  return v;
};
const PGA_URL = env('PGA_URL');
const PGA_EMAIL = env('PGA_EMAIL');
const PGA_PASSWORD = env('PGA_PASSWORD');
const PGA_SERVER = env('PGA_SERVER', 'ecommerce_ingest demo');
const PGPORT = env('PGPORT');
const SHOTS_DIR = env('SHOTS_DIR');
const CHROME_DATA = env('CHROME_DATA', `/tmp/pgadmin-test-chrome-${process.pid}`);
const FAIL_DIR = env('FAIL_DIR', path.dirname(CHROME_DATA));
const LONG = 60_000;

// ---- independent checks, through psql and not through pgAdmin -------------------------------
function psql(sql) {
  return execFileSync('psql', ['-X', '-q', '-At', '-h', '127.0.0.1', '-p', PGPORT, '-U', 'postgres',
    '-d', 'postgres', '-c', sql], { encoding: 'utf8' }).trim();
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

// ---- the browser ------------------------------------------------------------------------------
rmSync(CHROME_DATA, { recursive: true, force: true });
mkdirSync(SHOTS_DIR, { recursive: true });
const context = await chromium.launchPersistentContext(CHROME_DATA, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1600, height: 900 },
});
context.setDefaultTimeout(LONG);
const page = context.pages()[0] ?? (await context.newPage());

async function shot(name) {
  await page.mouse.move(1100, 800); // an empty part of the result panel: no tooltip
  await sleep(400);
  const file = path.join(SHOTS_DIR, `pgadmin-${name}.png`);
  await page.screenshot({ path: file });
  console.log(`    screenshot ${path.relative(process.cwd(), file)}`);
}

// The Query Tool lives in an iframe inside its pgAdmin tab.
const queryTool = () => page.frameLocator('iframe').last();

// The result grid as rows of cell texts; headers reduced to the column name (first line).
async function readGrid() {
  return queryTool().locator('body').evaluate(() => {
    const grid = document.querySelector('[role=grid]');
    if (!grid) return null;
    const rows = [...grid.querySelectorAll('[role=row]')].map((r) =>
      [...r.querySelectorAll('[role=columnheader],[role=gridcell]')].map((c) => c.innerText.trim()));
    if (rows.length === 0) return null;
    const header = rows[0].slice(1).map((h) => h.split('\n')[0].trim());
    const data = rows.slice(1).map((r) => Object.fromEntries(header.map((h, i) => [h, r[i + 1]])));
    return { header, data };
  });
}

// The Query Tool's status bar, e.g. "Total rows: 1 Query complete 00:00:00.101".
const statusBar = () => queryTool().locator('body').evaluate(
  () => (document.body.innerText.match(/Total rows:.*\n?.*Query complete [0-9:.]+/) || [''])[0]).catch(() => '');

// Types `sql` into the Query Tool's editor, executes it (F5) and waits for the status bar to
// report a new completion (best effort: the grid checks below are what assert).
async function runQuery(sql) {
  // Dismiss the previous query's notification, so a screenshot shows only the current one.
  for (const close of await page.locator('[role=alert] button, .notistack-SnackbarContainer button').all()) {
    await close.click({ timeout: 2_000 }).catch(() => {});
  }
  const before = await statusBar();
  const editor = queryTool().locator('.cm-content').first();
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(sql);
  await page.keyboard.press('Escape'); // close an autocompletion popup, if any
  await page.keyboard.press('F5');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && (await statusBar()) === before) await sleep(200);
}

// Waits until the grid's header matches `columns` (the exact list of column names, or a
// predicate on it) and `check(rows)` holds; returns the grid. Polling, not a fixed wait: the
// previous query's grid stays on screen until the new result arrives.
async function expectGrid(columns, check, what, timeout = 30_000) {
  const headerOk = typeof columns === 'function' ? columns
    : (h) => JSON.stringify(h) === JSON.stringify(columns);
  const deadline = Date.now() + timeout;
  let last = null;
  while (Date.now() < deadline) {
    last = await readGrid().catch(() => null);
    if (last && headerOk(last.header) && check(last.data)) return last;
    await sleep(300);
  }
  throw new Error(`assertion failed: ${what}; the grid shows ${JSON.stringify(last)}`);
}

// Widens a result column to its content (double-click on its resize handle), for screenshots.
async function autosize(column) {
  const handle = queryTool().locator('[role=columnheader]', {
    has: queryTool().locator(`[data-column-key="${column}"]`),
  }).locator('.rdg-resize-handle');
  await handle.dblclick({ timeout: 5_000 }).catch(() => {});
}

// ---- the steps --------------------------------------------------------------------------------
const STATUS_COLS = ['state', 'paused', 'files_pending', 'rows_ingested', 'lag_seconds', 'last_error'];
const STATUS_SQL = `SELECT ${STATUS_COLS.join(', ')} FROM ingest_status();`;

const steps = [
  ['log in to pgAdmin', async () => {
    await page.goto(PGA_URL, { waitUntil: 'domcontentloaded' });
    await page.getByPlaceholder('Email Address / Username').fill(PGA_EMAIL);
    await page.getByPlaceholder('Password').fill(PGA_PASSWORD);
    await shot('login');
    await page.getByRole('button', { name: 'Login' }).click();
    await page.getByText('Object Explorer').first().waitFor();
  }],

  ['open the pre-registered server and its database', async () => {
    const servers = page.locator('.file-name', { hasText: /^Servers/ }).first();
    await servers.waitFor();
    const server = page.locator('.file-name', { hasText: PGA_SERVER }).first();
    if (!(await server.isVisible())) await servers.dblclick();
    await server.waitFor();
    // Selecting the server connects to it. With trust authentication pgAdmin still asks for a
    // password (it may ask as soon as the tree opens): leave it empty and press OK.
    const dialog = page.locator('[role=dialog]', { hasText: 'Connect to Server' });
    const databases = page.locator('.file-name', { hasText: /^Databases/ }).first();
    const deadline = Date.now() + LONG;
    let clicked = false;
    while (!(await databases.isVisible()) && Date.now() < deadline) {
      if (await dialog.isVisible()) {
        await dialog.locator('button[data-label="OK"]').click();
        await dialog.waitFor({ state: 'hidden' });
      } else if (!clicked) {
        await sleep(1_000);
        if (!(await dialog.isVisible())) {
          await server.click({ timeout: 5_000 }).catch(() => {});
          clicked = true;
        }
      } else {
        await sleep(300);
      }
    }
    await databases.waitFor();
    const db = page.locator('.file-name', { hasText: /^postgres$/ }).first();
    await sleep(1_000);
    if (!(await db.isVisible())) await databases.dblclick();
    await db.waitFor();
    await db.click();
    await page.locator('.file-name', { hasText: /^Schemas/ }).first().waitFor();
  }],

  ['open the Query Tool (Tools menu)', async () => {
    await page.getByRole('button', { name: 'Tools' }).click();
    const item = page.getByRole('menuitem', { name: /^Query Tool/ });
    if (await item.isEnabled({ timeout: 5_000 }).catch(() => false)) {
      await item.click();
    } else { // fall back to the Object Explorer's toolbar button
      await page.keyboard.press('Escape');
      await page.getByRole('button', { name: 'Query Tool', exact: true }).click();
    }
    await queryTool().locator('.cm-content').first().waitFor();
    // Make room for the editor: close the Scratch Pad if it is open.
    const pad = queryTool().getByRole('tab', { name: /Scratch Pad/ }).getByRole('button', { name: 'Close' });
    if (await pad.isVisible().catch(() => false)) await pad.click().catch(() => {});
    await shot('query-tool');
  }],

  ['SELECT * FROM ingest_status() shows state running', async () => {
    assert(psql('SELECT state FROM ingest_status()') === 'running', 'psql: the worker runs before the test');
    await runQuery('SELECT * FROM ingest_status();');
    // The grid renders only the columns in view: check the first ones (a row per pipeline:
    // here only the events pipeline).
    const g = await expectGrid((h) => h[0] === 'pipeline' && h[3] === 'state' && h[4] === 'paused'
      && h[5] === 'worker_pid', (r) => r.length >= 1, 'SELECT * FROM ingest_status() shows its row');
    const rows = g.data;
    assert(rows.length === 1, 'ingest_status() returns one row (the events pipeline)');
    assert(rows[0].pipeline === 'events', `the row is the events pipeline's (got ${rows[0].pipeline})`);
    assert(rows[0].state === 'running', `state is running (got ${rows[0].state})`);
    assert(rows[0].paused === 'false', `paused is false (got ${rows[0].paused})`);
    assert(/^[0-9]+$/.test(rows[0].worker_pid), `worker_pid is set (got ${rows[0].worker_pid})`);
    await autosize('state');
    await shot('status');
  }],

  ['SELECT ingest_pause() pauses the worker', async () => {
    await runQuery('SELECT ingest_pause();');
    await expectGrid(['ingest_pause'], (r) => r.length === 1 && r[0].ingest_pause === 'paused',
      'ingest_pause() returns paused');
    await shot('pause');
  }],

  ['psql (independent of pgAdmin) sees the worker paused and no rows flowing', async () => {
    assert(psql('SELECT state FROM ingest_status()') === 'paused', 'psql: state is paused');
    assert(psql('SELECT paused FROM ingest_status()') === 't', 'psql: paused is true');
    await sleep(2_000); // a chunk in flight when the pause came may still commit
    const r1 = Number(psql('SELECT rows_ingested FROM ingest_status()'));
    await sleep(3_000);
    const r2 = Number(psql('SELECT rows_ingested FROM ingest_status()'));
    const pending = Number(psql('SELECT files_pending FROM ingest_status()'));
    console.log(`    psql: state paused, rows_ingested ${r1} -> ${r2} over 3 s, files_pending ${pending}`);
    assert(r1 === r2, `no rows ingested while paused (${r1} -> ${r2})`);
    assert(pending > 0, `the feeder's new files wait while paused (files_pending ${pending})`);
  }],

  ['ingest_status() in pgAdmin shows state paused', async () => {
    await runQuery(STATUS_SQL);
    const rows = (await expectGrid(STATUS_COLS, (r) => r.length === 1 && r[0].state === 'paused',
      'state is paused')).data;
    assert(rows[0].paused === 'true', `paused is true (got ${rows[0].paused})`);
    await autosize('state');
    await shot('paused-status');
  }],

  ['SELECT ingest_resume() resumes the worker', async () => {
    await runQuery('SELECT ingest_resume();');
    await expectGrid(['ingest_resume'], (r) => r.length === 1 && r[0].ingest_resume === 'running',
      'ingest_resume() returns running');
    await shot('resume');
    assert(psql('SELECT state FROM ingest_status()') === 'running', 'psql: state is running again');
    await runQuery(STATUS_SQL);
    await expectGrid(STATUS_COLS, (r) => r.length === 1 && r[0].state === 'running' && r[0].paused === 'false',
      'state is running after resume');
    // The backlog that built up while paused is ingested at once.
    const deadline = Date.now() + 30_000;
    while (Number(psql('SELECT files_pending FROM ingest_status()')) > 1 && Date.now() < deadline) await sleep(500);
    await runQuery(STATUS_SQL);
    await expectGrid(STATUS_COLS, (r) => r.length === 1 && r[0].state === 'running', 'state is running');
    await autosize('state');
    await shot('resumed-status');
  }],

  ['SELECT ingest_trigger() starts a trigger now', async () => {
    const before = Number(psql('SELECT count(*) FROM ingest_batches'));
    await runQuery('SELECT ingest_trigger();');
    const rows = (await expectGrid(['ingest_trigger'], (r) => r.length === 1 && r[0].ingest_trigger !== '',
      'ingest_trigger() returns a text')).data;
    console.log(`    ingest_trigger() returned '${rows[0].ingest_trigger}'; batches before: ${before}`);
    await shot('trigger');
  }],

  ['ingest_batches lists the last batches', async () => {
    await runQuery('SELECT * FROM ingest_batches ORDER BY batch_id DESC LIMIT 5;');
    const g = await expectGrid((h) => h[0] === 'batch_id', (r) => r.length === 5, 'ingest_batches shows 5 batches');
    for (const c of ['trigger', 'files', 'rows', 'rejected']) {
      assert(g.header.includes(c), `ingest_batches has column ${c}`);
    }
    assert(Number(g.data[0].rows) > 0, `the last batch ingested rows (${g.data[0].rows})`);
    await shot('batches');
  }],

  ['ingest_files lists the files', async () => {
    await runQuery('SELECT * FROM ingest_files ORDER BY discovered_at DESC LIMIT 5;');
    const g = await expectGrid((h) => h[0] === 'file_name' && h.includes('status'), (r) => r.length === 5,
      'ingest_files shows 5 files');
    assert(g.data.every((r) => /^events_.*\.csv$/.test(r.file_name)), "the files are the feeder's");
    assert(g.data.some((r) => r.status === 'done'), 'some file is done');
    await autosize('file_name');
    await shot('files');
  }],

  ['ingest_rejects shows the rejected rows', async () => {
    await runQuery('SELECT file_name, line_number, column_name, reason, raw_text FROM ingest_rejects ORDER BY reject_id DESC LIMIT 10;');
    const rows = (await expectGrid(['file_name', 'line_number', 'column_name', 'reason', 'raw_text'],
      (r) => r.length >= 1, 'ingest_rejects has rows (the feeder injects bad rows)')).data;
    assert(rows.every((r) => r.reason !== ''), 'every reject has a reason');
    await shot('rejects');
  }],
];

let passed = 0;
let failed = 0;
const t0 = Date.now();
for (const [name, fn] of steps) {
  const t = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e.message}`);
    const file = path.join(FAIL_DIR, 'pgadmin-failure.png');
    await page.screenshot({ path: file }).catch(() => {});
    console.log(`     screenshot of the failure: ${file}`);
    break;
  }
}
await context.close();
const skipped = steps.length - passed - failed;
console.log(`pgadmin ui test: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(`pgadmin ui test result: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed === 0 && passed === steps.length ? 0 : 1);
