#!/usr/bin/env node
// Plays an HLS URL with hls.js in headless Debian Chromium and prints ONE JSON
// report on stdout. Exit 0 whenever a report was produced (even if playback
// failed: the caller asserts); exit 2 on bad arguments, 1 if the harness broke.
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
const USAGE =
  'usage: node play.mjs <master.m3u8 URL> [--seconds 15] [--low-latency true|false] [--screenshot path.png]';

function parseArgs(argv) {
  const opts = { url: null, seconds: 15, lowLatency: true, screenshot: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--seconds') {
      opts.seconds = Number(value());
      if (!Number.isFinite(opts.seconds) || opts.seconds <= 0 || opts.seconds > 3600) {
        throw new Error('--seconds must be a number in (0, 3600]');
      }
    } else if (arg === '--low-latency') {
      const v = value();
      if (v !== 'true' && v !== 'false') throw new Error('--low-latency must be true or false');
      opts.lowLatency = v === 'true';
    } else if (arg === '--screenshot') {
      opts.screenshot = value();
    } else if (arg.startsWith('--')) {
      throw new Error(`unknown option ${arg}`);
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

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>pulse-edge player harness</title></head>
<body style="margin:0;background:#000">
<video id="video" muted playsinline autoplay width="640" height="360"></video>
<script src="/hls.min.js"></script>
<script src="/page.js"></script>
</body></html>`;

// A real http origin for the page, so the stream is fetched cross-origin
// exactly as a browser on another site would (exercises our CORS headers).
async function startPageServer() {
  const files = {
    '/': { type: 'text/html; charset=utf-8', body: PAGE_HTML },
    '/hls.min.js': {
      type: 'text/javascript',
      body: await readFile(join(HERE, 'node_modules/hls.js/dist/hls.min.js')),
    },
    '/page.js': { type: 'text/javascript', body: await readFile(join(HERE, 'page.js')) },
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

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000}s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function stats(values) {
  const xs = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (xs.length === 0) return null;
  const round = (x) => Number(x.toFixed(3));
  const sorted = [...xs].sort((a, b) => a - b);
  return {
    count: xs.length,
    min: round(sorted[0]),
    median: round(sorted[Math.floor(sorted.length / 2)]),
    max: round(sorted[sorted.length - 1]),
    last: round(xs[xs.length - 1]),
  };
}

function summarize(page) {
  const samples = page.samples || [];
  const final = page.final || {};
  const hasVideoLevel = (page.levels || []).some((l) => l.videoCodec || l.height);
  const audioOnly = page.levels && page.levels.length > 0 ? !hasVideoLevel && !final.videoWidth : false;
  const firstTime = samples.length ? samples[0].currentTime : null;
  const decodedFrames = Math.max(final.totalVideoFrames || 0, page.rvfcFrames || 0);
  const fatal = (page.errors || []).filter((e) => e.fatal);
  const rebuffers = (page.stalls || []).filter((s) => !s.startup);
  const advanced = firstTime === null || final.currentTime === null ? 0 : final.currentTime - firstTime;
  return {
    manifestParsed: (page.levels || []).length > 0,
    played: advanced > 0.5 && (audioOnly ? (final.audioDecodedBytes || 0) > 0 : decodedFrames > 0) && fatal.length === 0,
    audioOnly,
    timeToFirstFrame: page.firstFrameAt,
    currentTimeFirstSample: firstTime,
    currentTimeEnd: final.currentTime ?? null,
    currentTimeAdvanced: Number(advanced.toFixed(3)),
    decodedFrames,
    droppedFrames: final.droppedVideoFrames ?? null,
    videoDecodedBytes: final.videoDecodedBytes ?? null,
    audioDecodedBytes: final.audioDecodedBytes ?? null,
    videoSize: final.videoWidth ? [final.videoWidth, final.videoHeight] : null,
    timeToFirstPlaying: page.firstPlayingAt ?? null,
    stallCount: rebuffers.length,
    stalledSeconds: Number(rebuffers.reduce((sum, s) => sum + (s.duration || 0), 0).toFixed(3)),
    fatalErrors: fatal.length,
    nonFatalErrors: (page.errors || []).length - fatal.length,
    levelSwitches: (page.levelSwitches || []).length,
    fragsLoaded: page.fragsLoaded ?? 0,
    partsLoaded: page.partsLoaded ?? 0,
    latency: stats(samples.map((s) => s.latency)),
    targetLatency: stats(samples.map((s) => s.targetLatency)),
    playingDateLatency: stats(samples.map((s) => s.playingDateLatency)),
    bufferAhead: stats(samples.map((s) => s.bufferAhead)),
  };
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n${USAGE}\n`);
    process.exit(2);
  }

  const report = {
    url: opts.url,
    seconds: opts.seconds,
    lowLatency: opts.lowLatency,
    browser: null,
    codecSupport: null,
    hlsVersion: null,
    summary: null,
    playlist: null,
    levels: [],
    levelSwitches: [],
    errors: [],
    stalls: [],
    samples: [],
    videoEvents: [],
    final: null,
    console: [],
    harnessErrors: [],
  };
  let printed = false;
  const emit = (code) => {
    if (!printed) {
      printed = true;
      process.stdout.write(`${JSON.stringify(report)}\n`);
    }
    process.exit(code);
  };

  // Hard deadline: whatever happens, finish within seconds + 30.
  const watchdog = setTimeout(() => {
    report.harnessErrors.push('watchdog: harness exceeded its deadline');
    emit(1);
  }, (opts.seconds + 27) * 1000);
  watchdog.unref();

  // Checked up front: a failed launch leaves playwright's temp profile behind.
  try {
    await access(CHROMIUM, constants.X_OK);
  } catch {
    report.harnessErrors.push(`no executable browser at ${CHROMIUM} (set CHROMIUM_PATH)`);
    emit(1);
  }

  const { server, origin } = await startPageServer();
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Playwright already gives every launch a fresh temporary --user-data-dir.
      args: CHROMIUM_ARGS,
      timeout: 10_000,
    });
  } catch (err) {
    report.harnessErrors.push(`browser launch failed: ${err.message}`);
    server.close();
    emit(1);
  }

  let broken = false;
  try {
    report.browser = { version: browser.version(), executable: CHROMIUM };
    const context = await browser.newContext({ viewport: { width: 640, height: 360 } });
    const page = await context.newPage();
    page.setDefaultTimeout(5_000);
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') {
        report.console.push({ type: msg.type(), text: msg.text().slice(0, 500), url: msg.location().url || null });
      }
    });
    page.on('pageerror', (err) => report.console.push({ type: 'pageerror', text: String(err.message).slice(0, 500) }));
    page.on('crash', () => report.harnessErrors.push('page crashed'));

    await page.goto(`${origin}/`, { waitUntil: 'load', timeout: 5_000 });
    report.codecSupport = await page.evaluate(() => window.harnessCodecSupport());
    await page.evaluate((cfg) => window.harnessStart(cfg), { url: opts.url, lowLatency: opts.lowLatency });
    await sleep(opts.seconds * 1000);

    if (opts.screenshot) {
      try {
        await page.screenshot({ path: opts.screenshot, timeout: 5_000 });
      } catch (err) {
        report.harnessErrors.push(`screenshot failed: ${err.message}`);
      }
    }
    const pageReport = await withTimeout(page.evaluate(() => window.harnessReport()), 5_000, 'collecting report');
    report.hlsVersion = pageReport.hlsVersion;
    report.summary = summarize(pageReport);
    report.playlist = pageReport.playlist;
    report.levels = pageReport.levels;
    report.levelSwitches = pageReport.levelSwitches;
    report.errors = pageReport.errors;
    report.stalls = pageReport.stalls;
    report.samples = pageReport.samples;
    report.videoEvents = pageReport.events;
    report.final = pageReport.final;
    if (pageReport.startError) report.harnessErrors.push(`player start: ${pageReport.startError}`);
  } catch (err) {
    broken = true;
    report.harnessErrors.push(String(err.message || err));
  } finally {
    await withTimeout(browser.close(), 5_000, 'browser close').catch((err) => report.harnessErrors.push(err.message));
    server.close();
  }
  emit(broken ? 1 : 0);
}

main().catch((err) => {
  process.stderr.write(`harness failure: ${err.stack || err}\n`);
  process.exit(1);
});
