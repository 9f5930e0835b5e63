// What play.mjs and glass.mjs share: the command line skeleton, the loopback page server, the
// headless Debian Chromium session (launch, page, console capture, teardown), the watchdog and
// the ONE-JSON-report / exit-code contract (0 = a report was made, 2 = bad arguments, 1 = the
// harness broke). Each entry script keeps its options, its page script and its summary.
import http from 'node:http';
import { access, constants, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000}s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Parses `<URL> [--option value]...` into `opts` (which holds the defaults and `url: null`).
// `option(arg, value, opts)` handles one `--option` (calling `value()` for its value) and returns
// false for an unknown one. Throws with the message shown above the usage.
export function parseCommandLine(argv, opts, option) {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg.startsWith('--')) {
      if (!option(arg, value, opts)) throw new Error(`unknown option ${arg}`);
    } else if (opts.url === null) {
      opts.url = arg;
    } else {
      throw new Error(`unexpected argument ${arg}`);
    }
  }
  if (!opts.url) throw new Error('missing URL');
  const parsed = new URL(opts.url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('URL must be http(s)');
  return opts;
}

// {count, min, median, [p90,] max, [last]} of the finite numbers in `values` (null if none).
export function stats(values, { p90 = false, last = false } = {}) {
  const finite = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (finite.length === 0) return null;
  const round = (x) => Number(x.toFixed(3));
  const xs = [...finite].sort((a, b) => a - b);
  const at = (q) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))];
  return {
    count: xs.length,
    min: round(xs[0]),
    median: round(at(0.5)),
    ...(p90 ? { p90: round(at(0.9)) } : {}),
    max: round(xs[xs.length - 1]),
    ...(last ? { last: round(finite[finite.length - 1]) } : {}),
  };
}

// Rebuffers are the stalls after the first 'playing' (the page marks earlier ones `startup`).
export function rebuffers(stalls) {
  const rebuffered = (stalls || []).filter((s) => !s.startup);
  return {
    stallCount: rebuffered.length,
    stalledSeconds: Number(rebuffered.reduce((sum, s) => sum + (s.duration || 0), 0).toFixed(3)),
  };
}

// Calls `window[name]()` in the page (the page script's report function, bounded in time) and
// fills in the report: hlsVersion, summary = summarize(pageReport), the page report's `fields`
// as they are, and the page's start error. Returns the page report for anything else.
export async function collectPageReport(page, name, report, summarize, fields) {
  const pageReport = await withTimeout(page.evaluate((fn) => window[fn](), name), 5_000, 'collecting report');
  report.hlsVersion = pageReport.hlsVersion;
  report.summary = summarize(pageReport);
  for (const field of fields) report[field] = pageReport[field];
  if (pageReport.startError) report.harnessErrors.push(`player start: ${pageReport.startError}`);
  return pageReport;
}

// A real http origin for the page, so the stream is fetched cross-origin exactly as a browser on
// another site would (exercises the server's CORS headers). Serves hls.js, the shared page helpers
// (page-common.js) and the entry's own page script, in that order.
async function startPageServer(title, script) {
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>${title}</title></head>
<body style="margin:0;background:#000">
<video id="video" muted playsinline autoplay width="640" height="360"></video>
<script src="/hls.min.js"></script>
<script src="/page-common.js"></script>
<script src="/${script}"></script>
</body></html>`;
  const js = async (path) => ({ type: 'text/javascript', body: await readFile(join(HERE, path)) });
  const files = {
    '/': { type: 'text/html; charset=utf-8', body: html },
    '/hls.min.js': await js('node_modules/hls.js/dist/hls.min.js'),
    '/page-common.js': await js('page-common.js'),
    [`/${script}`]: await js(script),
  };
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      // 204 rather than 404 so /favicon.ico does not pollute the console report.
      res.writeHead(204).end();
      return;
    }
    res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

// Runs one harness session and exits the process with the JSON report on stdout. `spec`:
// - usage, parseArgs(argv) -> opts (throws on bad arguments: exit 2 with the usage)
// - report(opts) -> the entry's report fields (with `browser: null`); the report is
//   {url, seconds, ...these, console, harnessErrors}
// - deadlineSeconds(opts): the watchdog emits the report and exits 1 after this long
// - title, script: the page's title and its page script (a file next to this one)
// - launchTimeoutMs, startFailure (prefix of the harness error if the start fails)
// - chromiumArgs (optional): extra Chromium switches (fake capture devices for WHIP)
// - ready(opts) (optional): a promise started before the browser launch, awaited after it;
//   resolves to an error message (the start fails) or null
// - console: {max, chars, url}: at most `max` console errors/warnings, `chars` of text each,
//   with the source URL if `url`; page errors are capped at `chars` only
// - run(page, opts, report): drives the page once it has loaded and fills in the report
export function main(spec) {
  session(spec).catch((err) => {
    process.stderr.write(`harness failure: ${err.stack || err}\n`);
    process.exit(1);
  });
}

async function session(spec) {
  let opts;
  try {
    opts = spec.parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n${spec.usage}\n`);
    process.exit(2);
  }

  const report = { url: opts.url, seconds: opts.seconds, ...spec.report(opts), console: [], harnessErrors: [] };
  let printed = false;
  const emit = (code) => {
    if (!printed) {
      printed = true;
      process.stdout.write(`${JSON.stringify(report)}\n`);
    }
    process.exit(code);
  };

  // Hard deadline: whatever happens, finish in bounded time.
  const watchdog = setTimeout(() => {
    report.harnessErrors.push('watchdog: harness exceeded its deadline');
    emit(1);
  }, spec.deadlineSeconds(opts) * 1000);
  watchdog.unref();

  // Checked up front: a failed launch leaves playwright's temp profile behind.
  try {
    await access(CHROMIUM, constants.X_OK);
  } catch {
    report.harnessErrors.push(`no executable browser at ${CHROMIUM} (set CHROMIUM_PATH)`);
    emit(1);
  }

  const { server, origin } = await startPageServer(spec.title, spec.script);
  let browser;
  try {
    const ready = spec.ready ? spec.ready(opts) : null;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Playwright already gives every launch a fresh temporary --user-data-dir.
      args: [...CHROMIUM_ARGS, ...(spec.chromiumArgs || [])],
      timeout: spec.launchTimeoutMs,
    });
    const notReady = await ready;
    if (notReady) throw new Error(notReady);
  } catch (err) {
    report.harnessErrors.push(`${spec.startFailure}: ${err.message}`);
    if (browser) await browser.close().catch(() => {});
    server.close();
    emit(1);
  }

  let broken = false;
  try {
    report.browser = { version: browser.version(), executable: CHROMIUM };
    const context = await browser.newContext({ viewport: { width: 640, height: 360 } });
    const page = await context.newPage();
    page.setDefaultTimeout(5_000);
    const { max, chars, url } = spec.console;
    page.on('console', (msg) => {
      if ((msg.type() === 'error' || msg.type() === 'warning') && report.console.length < max) {
        const entry = { type: msg.type(), text: msg.text().slice(0, chars) };
        if (url) entry.url = msg.location().url || null;
        report.console.push(entry);
      }
    });
    page.on('pageerror', (err) => report.console.push({ type: 'pageerror', text: String(err.message).slice(0, chars) }));
    page.on('crash', () => report.harnessErrors.push('page crashed'));
    await page.goto(`${origin}/`, { waitUntil: 'load', timeout: 5_000 });
    await spec.run(page, opts, report);
  } catch (err) {
    broken = true;
    report.harnessErrors.push(String(err.message || err));
  } finally {
    await withTimeout(browser.close(), 5_000, 'browser close').catch((err) => report.harnessErrors.push(err.message));
    server.close();
  }
  emit(broken ? 1 : 0);
}
