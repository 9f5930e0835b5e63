#!/usr/bin/env node
// Publishes to a WHIP endpoint from headless Debian Chromium: getUserMedia on
// Chromium's fake capture devices (a test pattern and a beep), one
// RTCPeerConnection, the offer POSTed as WHIP (RFC 9725), then DELETE.
// Prints ONE JSON report on stdout; exit codes as play.mjs.
import { main, parseCommandLine, sleep } from './harness.mjs';

const USAGE =
  'usage: node whip.mjs <WHIP endpoint URL> --key KEY [--seconds 20] [--codec vp8|h264] ' +
  '[--auth bearer|path] [--trickle true|false] [--width 640] [--height 360] [--fps 30] [--delete true|false] ' +
  '[--source camera|stamp] [--max-kbps N]';

function parseArgs(argv) {
  const defaults = {
    url: null, key: null, seconds: 20, codec: 'vp8', auth: 'bearer', trickle: false,
    width: 640, height: 360, fps: 30, delete: true, source: 'camera', maxKbps: 0,
  };
  const opts = parseCommandLine(argv, defaults, (arg, value, opts) => {
    const number = (name, max) => {
      const n = Number(value());
      if (!Number.isFinite(n) || n <= 0 || n > max) throw new Error(`${name} must be a number in (0, ${max}]`);
      return n;
    };
    const oneOf = (name, allowed) => {
      const v = value();
      if (!allowed.includes(v)) throw new Error(`${name} must be one of ${allowed.join(', ')}`);
      return v;
    };
    if (arg === '--key') opts.key = value();
    else if (arg === '--seconds') opts.seconds = number('--seconds', 3600);
    else if (arg === '--codec') opts.codec = oneOf('--codec', ['vp8', 'h264']);
    else if (arg === '--auth') opts.auth = oneOf('--auth', ['bearer', 'path']);
    else if (arg === '--trickle') opts.trickle = oneOf('--trickle', ['true', 'false']) === 'true';
    else if (arg === '--delete') opts.delete = oneOf('--delete', ['true', 'false']) === 'true';
    else if (arg === '--width') opts.width = number('--width', 4096);
    else if (arg === '--height') opts.height = number('--height', 4096);
    else if (arg === '--fps') opts.fps = number('--fps', 120);
    // stamp: a canvas carrying the glass-to-glass time stamp (bench/whip.py), instead of the fake camera.
    else if (arg === '--source') opts.source = oneOf('--source', ['camera', 'stamp']);
    else if (arg === '--max-kbps') opts.maxKbps = number('--max-kbps', 100000);
    else return false;
    return true;
  });
  if (!opts.key) throw new Error('--key is required');
  return opts;
}

main({
  usage: USAGE,
  parseArgs,
  report: (opts) => ({ codec: opts.codec, auth: opts.auth, trickle: opts.trickle, browser: null, whip: null }),
  deadlineSeconds: (opts) => opts.seconds + 40,
  title: 'pulse-edge WHIP publisher',
  script: 'whip-page.js',
  launchTimeoutMs: 10_000,
  startFailure: 'browser launch failed',
  chromiumArgs: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
  console: { max: 50, chars: 500, url: false },
  async run(page, opts, report) {
    page.setDefaultTimeout((opts.seconds + 30) * 1000);
    report.whip = await page.evaluate((cfg) => window.whipPublish(cfg), {
      url: opts.url,
      key: opts.key,
      seconds: opts.seconds,
      codec: opts.codec,
      auth: opts.auth,
      trickle: opts.trickle,
      width: opts.width,
      height: opts.height,
      fps: opts.fps,
      deleteAtEnd: opts.delete,
      source: opts.source,
      maxKbps: opts.maxKbps,
    });
    await sleep(100);
  },
});
