// Runs inside the glass-to-glass page (served by glass.mjs next to hls.min.js and page-common.js).
//
// Every frame the player presents is seen through requestVideoFrameCallback. About once a
// second (after `sampleIntervalMs`), the presented frame is drawn to a small canvas, the
// wall-clock stamp burned into its top rows by the publisher (bench/latency.py) is decoded,
// and latency = Date.now() - stamp is recorded together with hls.js's own view.
//
// The stamp: the top 72/1080 of the picture is a row of 32 equal-width black/white cells,
// most significant bit first: 24 bits of the capture time in ms modulo 2^24, then an 8-bit
// check c = (b0 + 3*b1 + 7*b2 + 90) mod 256 over the three time bytes (b0 = low byte). A read
// whose check fails, or with any cell too close to mid-grey to call, is rejected and counted.
'use strict';

(function () {
  const CELLS = 32;
  const TIME_BITS = 24;
  const MODULUS = 2 ** TIME_BITS;
  const STRIP_FRACTION = 72 / 1080;
  const CELL_PX = 8; // canvas pixels per cell, each way
  const AMBIGUOUS = 48; // a cell mean within 128 +- this is not trusted as a bit

  const helpers = window.harnessPageHelpers({
    frames: 0,
    stampAttempts: 0,
    stampRejects: 0,
    lastReject: null,
    hlsConfig: null,
    lockedLevel: null,
  });
  const { state, now, round, watchStalls } = helpers;
  let hls = null;
  let video = null;
  let canvas = null;
  let ctx = null;
  let nextSampleAt = 0;
  let sampleIntervalMs = 1000;
  const quality = () => helpers.quality(video);
  const bufferAhead = () => helpers.bufferAhead(video);

  function checkByte(t) {
    return ((t & 0xff) + 3 * ((t >> 8) & 0xff) + 7 * ((t >> 16) & 0xff) + 90) % 256;
  }

  // Returns {stampMs (mod 2^24), minMargin} or {reject: reason}.
  function readStamp() {
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    if (!vw || !vh) return { reject: 'no video size' };
    ctx.drawImage(video, 0, 0, vw, vh * STRIP_FRACTION, 0, 0, CELLS * CELL_PX, CELL_PX);
    const data = ctx.getImageData(0, 0, CELLS * CELL_PX, CELL_PX).data;
    let word = 0;
    let minMargin = 255;
    for (let cell = 0; cell < CELLS; cell++) {
      // The centre quarter of each cell: clear of the blur x264 and scaling leave at edges.
      let sum = 0;
      let n = 0;
      for (let y = CELL_PX / 4; y < (3 * CELL_PX) / 4; y++) {
        for (let x = cell * CELL_PX + CELL_PX / 4; x < cell * CELL_PX + (3 * CELL_PX) / 4; x++) {
          const i = (y * CELLS * CELL_PX + x) * 4;
          sum += (data[i] + data[i + 1] + data[i + 2]) / 3;
          n += 1;
        }
      }
      const mean = sum / n;
      minMargin = Math.min(minMargin, Math.abs(mean - 128));
      word = word * 2 + (mean > 128 ? 1 : 0);
    }
    if (minMargin < AMBIGUOUS) return { reject: `ambiguous cell (margin ${minMargin.toFixed(0)})` };
    const time = Math.floor(word / 256);
    const check = word % 256;
    if (checkByte(time) !== check) return { reject: 'check field mismatch' };
    return { stampMs: time, minMargin };
  }

  // The sender and this page share one clock (loopback); the stamp is the capture time
  // modulo 2^24 ms (4.66 h), so the latency is the signed difference modulo that.
  function latencyMs(nowMs, stampMs) {
    let d = (nowMs - stampMs) % MODULUS;
    if (d < 0) d += MODULUS;
    if (d > MODULUS / 2) d -= MODULUS;
    return d;
  }

  function onFrame(_when, meta) {
    state.frames += 1;
    if (state.firstFrameAt === null) {
      state.firstFrameAt = round(now());
      nextSampleAt = performance.now();
    }
    if (performance.now() >= nextSampleAt) {
      const nowMs = Date.now();
      state.stampAttempts += 1;
      let read;
      try {
        read = readStamp();
      } catch (err) {
        read = { reject: `canvas: ${err && err.message ? err.message : err}` };
      }
      if (read.reject) {
        // Try again on the next presented frame rather than waiting another interval.
        state.stampRejects += 1;
        state.lastReject = read.reject;
      } else {
        const q = quality();
        const level = hls && hls.levels && hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : null;
        // expectedDisplayTime is when the compositor expects to show this frame.
        const displayMs = meta && typeof meta.expectedDisplayTime === 'number'
          ? performance.timeOrigin + meta.expectedDisplayTime
          : null;
        state.samples.push({
          t: round(now()),
          latency: round(latencyMs(nowMs, read.stampMs) / 1000),
          displayLatency: displayMs === null ? null : round(latencyMs(displayMs, read.stampMs) / 1000),
          margin: Math.round(read.minMargin),
          hlsLatency: hls ? round(hls.latency) : null,
          targetLatency: hls ? round(hls.targetLatency) : null,
          playbackRate: round(video.playbackRate),
          currentTime: round(video.currentTime),
          bufferAhead: bufferAhead(),
          level: hls ? hls.currentLevel : null,
          levelHeight: level ? level.height || null : null,
          videoHeight: video.videoHeight,
          totalVideoFrames: q.totalVideoFrames,
          droppedVideoFrames: q.droppedVideoFrames,
        });
        nextSampleAt = performance.now() + sampleIntervalMs;
      }
    }
    video.requestVideoFrameCallback(onFrame);
  }

  function watchHls(Hls, lockHeight) {
    const E = Hls.Events;
    hls.on(E.MANIFEST_PARSED, (_e, data) => {
      state.levels = (data.levels || []).map((l, index) => ({
        index,
        width: l.width || null,
        height: l.height || null,
        bitrate: l.bitrate || null,
        codecs: [l.videoCodec, l.audioCodec].filter(Boolean).join(','),
      }));
      if (lockHeight) {
        const index = state.levels.findIndex((l) => l.height === lockHeight);
        if (index < 0) {
          state.startError = `no level with height ${lockHeight}`;
        } else {
          // Before anything is loaded: start there and stay there (manual level, no ABR).
          hls.startLevel = index;
          hls.loadLevel = index;
          state.lockedLevel = index;
        }
      }
      video.play().catch((err) => state.errors.push({ t: round(now()), fatal: false, details: `play(): ${err}` }));
    });
    hls.on(E.LEVEL_SWITCHED, (_e, data) => {
      const level = hls.levels[data.level] || {};
      state.levelSwitches.push({ t: round(now()), level: data.level, height: level.height || null });
    });
    hls.on(E.LEVEL_LOADED, (_e, data) => {
      if (state.playlist) return;
      const d = data.details || {};
      state.playlist = {
        live: !!d.live,
        targetDuration: round(d.targetduration),
        partTarget: round(d.partTarget) || null,
        canBlockReload: !!d.canBlockReload,
        holdBack: round(d.holdBack) || null,
        partHoldBack: round(d.partHoldBack) || null,
        fragments: (d.fragments || []).length,
        parts: (d.partList || []).length,
      };
    });
    hls.on(E.ERROR, (_e, data) => {
      state.errors.push({
        t: round(now()),
        fatal: !!data.fatal,
        type: data.type || null,
        details: data.details || null,
        url: data.url || (data.frag && data.frag.url) || (data.context && data.context.url) || null,
      });
    });
  }

  window.glassStart = function (config) {
    state.startedAt = performance.now();
    sampleIntervalMs = config.sampleIntervalMs || 1000;
    video = document.getElementById('video');
    canvas = document.createElement('canvas');
    canvas.width = CELLS * CELL_PX;
    canvas.height = CELL_PX;
    ctx = canvas.getContext('2d', { willReadFrequently: true });
    watchStalls(video);
    const Hls = window.Hls;
    if (!Hls || !Hls.isSupported()) {
      state.startError = 'hls.js not supported in this browser (no MediaSource?)';
      return;
    }
    if (typeof video.requestVideoFrameCallback !== 'function') {
      state.startError = 'requestVideoFrameCallback not supported';
      return;
    }
    try {
      state.hlsConfig = { ...config.hlsConfig };
      hls = new Hls(state.hlsConfig);
      watchHls(Hls, config.lockHeight || null);
      hls.loadSource(config.url);
      hls.attachMedia(video);
      video.requestVideoFrameCallback(onFrame);
    } catch (err) {
      state.startError = String(err && err.stack ? err.stack : err);
    }
  };

  window.glassFirstFrame = () => state.firstFrameAt;

  window.glassReport = function () {
    return helpers.report(video, (q) => ({
      t: round(now()),
      currentTime: round(video.currentTime),
      playbackRate: round(video.playbackRate),
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
      totalVideoFrames: q.totalVideoFrames,
      droppedVideoFrames: q.droppedVideoFrames,
      hlsLatency: hls ? round(hls.latency) : null,
      targetLatency: hls ? round(hls.targetLatency) : null,
      level: hls ? hls.currentLevel : null,
    }));
  };
})();
