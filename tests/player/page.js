// Runs inside the harness page (served by play.mjs next to hls.min.js and page-common.js).
// All observation happens here so that sample timing does not depend on the
// CDP round-trip; play.mjs only starts it and collects window.harnessReport().
'use strict';

(function () {
  const helpers = window.harnessPageHelpers({ fragsLoaded: 0, partsLoaded: 0, rvfcFrames: 0, events: [] });
  const { state, now, round, watchStalls } = helpers;
  let hls = null;
  let video = null;
  const quality = () => helpers.quality(video);
  const bufferAhead = () => helpers.bufferAhead(video);

  function bufferedRanges() {
    const ranges = [];
    for (let i = 0; i < video.buffered.length; i++) {
      ranges.push([round(video.buffered.start(i)), round(video.buffered.end(i))]);
    }
    return ranges;
  }

  function playingDateLatency() {
    const date = hls && hls.playingDate;
    if (!date || typeof date.getTime !== 'function') return null;
    return round((Date.now() - date.getTime()) / 1000);
  }

  function sample() {
    const q = quality();
    state.samples.push({
      t: round(now()),
      currentTime: round(video.currentTime),
      paused: video.paused,
      readyState: video.readyState,
      latency: hls ? round(hls.latency) : null,
      targetLatency: hls ? round(hls.targetLatency) : null,
      playingDateLatency: playingDateLatency(),
      bufferAhead: bufferAhead(),
      buffered: bufferedRanges(),
      totalVideoFrames: q.totalVideoFrames,
      droppedVideoFrames: q.droppedVideoFrames,
      rvfcFrames: state.rvfcFrames,
      level: hls ? hls.currentLevel : null,
    });
  }

  function countFrames() {
    if (typeof video.requestVideoFrameCallback !== 'function') return;
    const onFrame = () => {
      state.rvfcFrames += 1;
      if (state.firstFrameAt === null) state.firstFrameAt = round(now());
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  function describeLevel(level, index) {
    return {
      index,
      width: level.width || null,
      height: level.height || null,
      bitrate: level.bitrate || null,
      videoCodec: level.videoCodec || null,
      audioCodec: level.audioCodec || null,
      codecs: level.codecSet || [level.videoCodec, level.audioCodec].filter(Boolean).join(','),
      name: level.name || null,
    };
  }

  function errorUrl(data) {
    return (
      data.url ||
      (data.frag && data.frag.url) ||
      (data.part && data.part.url) ||
      (data.context && data.context.url) ||
      null
    );
  }

  function watchHls(Hls) {
    const E = Hls.Events;
    hls.on(E.MANIFEST_PARSED, (_e, data) => {
      state.levels = (data.levels || []).map(describeLevel);
    });
    hls.on(E.LEVEL_SWITCHED, (_e, data) => {
      const level = hls.levels[data.level] || {};
      state.levelSwitches.push({
        t: round(now()),
        level: data.level,
        height: level.height || null,
        bitrate: level.bitrate || null,
      });
    });
    hls.on(E.LEVEL_LOADED, (_e, data) => {
      if (state.playlist) return;
      const d = data.details || {};
      state.playlist = {
        live: !!d.live,
        type: d.type || null,
        targetDuration: round(d.targetduration),
        partTarget: round(d.partTarget) || null,
        canBlockReload: !!d.canBlockReload,
        canSkipUntil: round(d.canSkipUntil) || null,
        holdBack: round(d.holdBack) || null,
        partHoldBack: round(d.partHoldBack) || null,
        fragments: (d.fragments || []).length,
        parts: (d.partList || []).length,
        encrypted: (d.fragments || []).some((f) => f.encrypted || (f.decryptdata && f.decryptdata.method)),
      };
    });
    hls.on(E.FRAG_LOADED, (_e, data) => {
      if (data.part) state.partsLoaded += 1;
      else state.fragsLoaded += 1;
    });
    hls.on(E.ERROR, (_e, data) => {
      const response = data.response || (data.networkDetails && { code: data.networkDetails.status });
      state.errors.push({
        t: round(now()),
        fatal: !!data.fatal,
        type: data.type || null,
        details: data.details || null,
        url: errorUrl(data),
        responseCode: response && typeof response.code === 'number' ? response.code : null,
        reason: data.reason || (data.error && String(data.error.message || data.error)) || null,
      });
    });
  }

  function watchVideo() {
    watchStalls(video);
    for (const name of ['playing', 'ended', 'error', 'loadedmetadata']) {
      video.addEventListener(name, () => {
        state.events.push({ t: round(now()), event: name });
      });
    }
  }

  window.harnessStart = function (config) {
    state.startedAt = performance.now();
    video = document.getElementById('video');
    watchVideo();
    countFrames();
    const Hls = window.Hls;
    if (!Hls || !Hls.isSupported()) {
      state.startError = 'hls.js not supported in this browser (no MediaSource?)';
      return;
    }
    try {
      hls = new Hls({
        lowLatencyMode: config.lowLatency,
        debug: false,
        enableWorker: true,
        // Keep hls.js from giving up on slow loopback peers before our own deadline.
        manifestLoadingMaxRetry: 2,
        levelLoadingMaxRetry: 4,
        fragLoadingMaxRetry: 4,
      });
      watchHls(Hls);
      hls.loadSource(config.url);
      hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        video.play().catch((err) => {
          state.events.push({ t: round(now()), event: 'play-rejected', reason: String(err) });
        });
      });
    } catch (err) {
      state.startError = String(err && err.stack ? err.stack : err);
    }
    setInterval(sample, 1000);
  };

  window.harnessReport = function () {
    sample();
    return helpers.report(video, (q) => ({
      currentTime: round(video.currentTime),
      paused: video.paused,
      ended: video.ended,
      readyState: video.readyState,
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
      totalVideoFrames: q.totalVideoFrames,
      droppedVideoFrames: q.droppedVideoFrames,
      videoDecodedBytes: typeof video.webkitVideoDecodedByteCount === 'number' ? video.webkitVideoDecodedByteCount : null,
      audioDecodedBytes: typeof video.webkitAudioDecodedByteCount === 'number' ? video.webkitAudioDecodedByteCount : null,
      mediaError: video.error ? { code: video.error.code, message: video.error.message } : null,
    }));
  };

  window.harnessCodecSupport = function () {
    const has = typeof MediaSource !== 'undefined' && typeof MediaSource.isTypeSupported === 'function';
    const check = (type) => (has ? MediaSource.isTypeSupported(type) : false);
    return {
      mediaSource: has,
      h264Aac: check('video/mp4; codecs="avc1.64001f,mp4a.40.2"'),
      h264: check('video/mp4; codecs="avc1.64001f"'),
      aac: check('audio/mp4; codecs="mp4a.40.2"'),
      hevc: check('video/mp4; codecs="hvc1.1.6.L93.B0"'),
      av1: check('video/mp4; codecs="av01.0.05M.08"'),
      opus: check('audio/mp4; codecs="opus"'),
    };
  };
})();
