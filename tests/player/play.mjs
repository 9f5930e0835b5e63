#!/usr/bin/env node
// Plays an HLS URL with hls.js in headless Debian Chromium and prints ONE JSON
// report on stdout. Exit 0 whenever a report was produced (even if playback
// failed: the caller asserts); exit 2 on bad arguments, 1 if the harness broke.
// The browser session, page server and report handling are in harness.mjs.
import { collectPageReport, main, parseCommandLine, rebuffers, sleep, stats } from './harness.mjs';

const USAGE =
  'usage: node play.mjs <master.m3u8 URL> [--seconds 15] [--low-latency true|false] [--screenshot path.png]';

function parseArgs(argv) {
  const defaults = { url: null, seconds: 15, lowLatency: true, screenshot: null };
  return parseCommandLine(argv, defaults, (arg, value, opts) => {
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
    } else {
      return false;
    }
    return true;
  });
}

// Every figure also reports its last sample.
const LAST = { last: true };

function summarize(page) {
  const samples = page.samples || [];
  const final = page.final || {};
  const hasVideoLevel = (page.levels || []).some((l) => l.videoCodec || l.height);
  const audioOnly = page.levels && page.levels.length > 0 ? !hasVideoLevel && !final.videoWidth : false;
  const firstTime = samples.length ? samples[0].currentTime : null;
  const decodedFrames = Math.max(final.totalVideoFrames || 0, page.rvfcFrames || 0);
  const fatal = (page.errors || []).filter((e) => e.fatal);
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
    ...rebuffers(page.stalls),
    fatalErrors: fatal.length,
    nonFatalErrors: (page.errors || []).length - fatal.length,
    levelSwitches: (page.levelSwitches || []).length,
    fragsLoaded: page.fragsLoaded ?? 0,
    partsLoaded: page.partsLoaded ?? 0,
    latency: stats(samples.map((s) => s.latency), LAST),
    targetLatency: stats(samples.map((s) => s.targetLatency), LAST),
    playingDateLatency: stats(samples.map((s) => s.playingDateLatency), LAST),
    bufferAhead: stats(samples.map((s) => s.bufferAhead), LAST),
  };
}

main({
  usage: USAGE,
  parseArgs,
  report: (opts) => ({
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
  }),
  // Whatever happens, finish within seconds + 30.
  deadlineSeconds: (opts) => opts.seconds + 27,
  title: 'pulse-edge player harness',
  script: 'page.js',
  launchTimeoutMs: 10_000,
  startFailure: 'browser launch failed',
  console: { max: Infinity, chars: 500, url: true },
  async run(page, opts, report) {
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
    const pageReport = await collectPageReport(page, 'harnessReport', report, summarize, [
      'playlist',
      'levels',
      'levelSwitches',
      'errors',
      'stalls',
      'samples',
      'final',
    ]);
    report.videoEvents = pageReport.events;
  },
});
