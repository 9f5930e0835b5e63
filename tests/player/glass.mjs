#!/usr/bin/env node
// Glass-to-glass latency in a real player: plays an HLS URL with hls.js in headless Debian
// Chromium and, about once a second on a presented frame, decodes the wall-clock stamp the
// publisher burned into the picture (see glass-page.js and bench/latency.py). Prints ONE JSON
// report on stdout. Exit 0 whenever a report was produced (the caller asserts on it); exit 2
// on bad arguments; 1 if the harness broke.
//
// Same approach as play.mjs (own loopback origin for the page, so the stream is fetched
// cross-origin; playwright-core driving /usr/bin/chromium), with its own page; the shared
// session, page server and report handling are in harness.mjs.
import { collectPageReport, main, parseCommandLine, rebuffers, sleep, stats } from './harness.mjs';

const USAGE =
  'usage: node glass.mjs <master.m3u8 URL> [--seconds 60] [--hls-config JSON] [--level HEIGHT]\n' +
  '       [--wait-ready SECONDS] [--first-frame-timeout SECONDS] [--interval-ms 1000]';

function parseArgs(argv) {
  const defaults = {
    url: null,
    seconds: 60,
    hlsConfig: { lowLatencyMode: true },
    level: null,
    waitReady: 0,
    firstFrameTimeout: 20,
    intervalMs: 1000,
  };
  const number = (arg, v, lo, hi) => {
    const x = Number(v);
    if (!Number.isFinite(x) || x < lo || x > hi) throw new Error(`${arg} must be a number in [${lo}, ${hi}]`);
    return x;
  };
  return parseCommandLine(argv, defaults, (arg, value, opts) => {
    if (arg === '--seconds') opts.seconds = number(arg, value(), 1, 3600);
    else if (arg === '--level') opts.level = number(arg, value(), 1, 4320);
    else if (arg === '--wait-ready') opts.waitReady = number(arg, value(), 0, 120);
    else if (arg === '--first-frame-timeout') opts.firstFrameTimeout = number(arg, value(), 1, 120);
    else if (arg === '--interval-ms') opts.intervalMs = number(arg, value(), 100, 60000);
    else if (arg === '--hls-config') {
      const parsed = JSON.parse(value());
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error('--hls-config must be a JSON object');
      }
      // hls.js defaults plus low-latency mode, with the caller's settings on top.
      opts.hlsConfig = { lowLatencyMode: true, ...parsed };
    } else return false;
    return true;
  });
}

// The stream may still be starting when the browser is up: wait (bounded) until the master
// playlist answers and every playlist it names lists media (a part or a segment) before handing
// it to hls.js, so that start-up is neither hls.js's retry back-off nor its level-empty fallback.
async function waitReady(url, seconds) {
  const deadline = Date.now() + seconds * 1000;
  const text = async (u) => {
    const res = await fetch(u, { signal: AbortSignal.timeout(2000) });
    return res.ok ? res.text() : '';
  };
  while (Date.now() < deadline) {
    try {
      const master = await text(url);
      const uris = master
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'))
        .concat([...master.matchAll(/URI="([^"]+)"/g)].map((m) => m[1]));
      if (master.includes('#EXTM3U') && uris.length > 0) {
        const media = await Promise.all(uris.map((u) => text(new URL(u, url).href)));
        if (media.every((m) => /^#EXT-X-PART:|^#EXTINF:/m.test(m))) return true;
      }
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  return false;
}

function summarize(page) {
  const samples = page.samples || [];
  const heights = {};
  for (const s of samples) heights[s.videoHeight] = (heights[s.videoHeight] || 0) + 1;
  const final = page.final || {};
  return {
    stamps: samples.length,
    stampAttempts: page.stampAttempts,
    stampRejects: page.stampRejects,
    lastReject: page.lastReject,
    latency: stats(samples.map((s) => s.latency), P90),
    displayLatency: stats(samples.map((s) => s.displayLatency), P90),
    hlsLatency: stats(samples.map((s) => s.hlsLatency), P90),
    targetLatency: stats(samples.map((s) => s.targetLatency), P90),
    playbackRate: stats(samples.map((s) => s.playbackRate), P90),
    bufferAhead: stats(samples.map((s) => s.bufferAhead), P90),
    presentedHeights: heights,
    levelSwitches: (page.levelSwitches || []).length,
    timeToFirstFrame: page.firstFrameAt,
    ...rebuffers(page.stalls),
    totalVideoFrames: final.totalVideoFrames ?? null,
    droppedVideoFrames: final.droppedVideoFrames ?? null,
    presentedFrames: page.frames,
    fatalErrors: (page.errors || []).filter((e) => e.fatal).length,
    nonFatalErrors: (page.errors || []).filter((e) => !e.fatal).length,
  };
}

// Every figure also reports its 90th percentile.
const P90 = { p90: true };

main({
  usage: USAGE,
  parseArgs,
  report: (opts) => ({
    level: opts.level,
    hlsConfig: opts.hlsConfig,
    browser: null,
    hlsVersion: null,
    summary: null,
    playlist: null,
    levels: [],
    lockedLevel: null,
    levelSwitches: [],
    errors: [],
    stalls: [],
    samples: [],
    final: null,
  }),
  deadlineSeconds: (opts) => opts.seconds + opts.waitReady + opts.firstFrameTimeout + 25,
  title: 'pulse-edge glass-to-glass',
  script: 'glass-page.js',
  launchTimeoutMs: 15_000,
  startFailure: 'start failed',
  // Launch while the stream may still be starting; wait for the playlist in parallel.
  ready: async (opts) =>
    opts.waitReady > 0 && !(await waitReady(opts.url, opts.waitReady)) ? `stream not ready after ${opts.waitReady}s` : null,
  console: { max: 50, chars: 300, url: false },
  async run(page, opts, report) {
    await page.evaluate((cfg) => window.glassStart(cfg), {
      url: opts.url,
      hlsConfig: opts.hlsConfig,
      lockHeight: opts.level,
      sampleIntervalMs: opts.intervalMs,
    });
    // The sampling window starts at the first presented frame.
    const frameDeadline = Date.now() + opts.firstFrameTimeout * 1000;
    while (Date.now() < frameDeadline && (await page.evaluate(() => window.glassFirstFrame())) === null) {
      await sleep(50);
    }
    if ((await page.evaluate(() => window.glassFirstFrame())) === null) {
      report.harnessErrors.push(`no frame presented within ${opts.firstFrameTimeout}s`);
    } else {
      await sleep(opts.seconds * 1000);
    }
    const fields = ['playlist', 'levels', 'lockedLevel', 'levelSwitches', 'errors', 'stalls', 'samples', 'final'];
    const pageReport = await collectPageReport(page, 'glassReport', report, summarize, fields);
    report.errors = pageReport.errors.slice(0, 50);
  },
});
