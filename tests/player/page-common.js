// Helpers shared by the harness pages (page.js for play.mjs, glass-page.js for glass.mjs).
// harness.mjs serves this file and loads it after hls.min.js and before the page's own script.
'use strict';

// Returns the page's report state (the fields both pages report, plus the page's own `extra`
// fields) and helpers over it. `state.startedAt` (performance.now() when the page starts the
// player) is the time origin of `now()`; the stall tracker fills `stalls` and `firstPlayingAt`.
window.harnessPageHelpers = function (extra) {
  const state = {
    startedAt: 0,
    levels: [],
    levelSwitches: [],
    errors: [],
    samples: [],
    stalls: [],
    playlist: null,
    firstFrameAt: null,
    firstPlayingAt: null,
    startError: null,
    ...extra,
  };
  let openStall = null;

  const now = () => (performance.now() - state.startedAt) / 1000;
  const round = (x, digits = 3) =>
    typeof x === 'number' && Number.isFinite(x) ? Number(x.toFixed(digits)) : null;

  // Seconds buffered ahead of the playhead (in the range that holds it).
  function bufferAhead(video) {
    const t = video.currentTime;
    for (let i = 0; i < video.buffered.length; i++) {
      if (video.buffered.start(i) <= t + 0.1 && t <= video.buffered.end(i)) {
        return round(video.buffered.end(i) - t);
      }
    }
    return 0;
  }

  function quality(video) {
    const q = typeof video.getVideoPlaybackQuality === 'function' ? video.getVideoPlaybackQuality() : null;
    return {
      totalVideoFrames: q ? q.totalVideoFrames : null,
      droppedVideoFrames: q ? q.droppedVideoFrames : null,
    };
  }

  // Records every 'waiting' as a stall in state.stalls, ended by 'playing' or by currentTime
  // moving on; a 'waiting' before the first 'playing' is startup, not a rebuffer.
  function watchStalls(video) {
    video.addEventListener('waiting', () => {
      if (openStall) return;
      openStall = {
        t: round(now()),
        currentTime: round(video.currentTime),
        duration: null,
        startup: state.firstPlayingAt === null,
      };
      state.stalls.push(openStall);
    });
    const endStall = () => {
      if (!openStall) return;
      openStall.duration = round(now() - openStall.t);
      openStall = null;
    };
    video.addEventListener('playing', () => {
      if (state.firstPlayingAt === null) state.firstPlayingAt = round(now());
      endStall();
    });
    video.addEventListener('timeupdate', () => {
      if (openStall && video.currentTime > openStall.currentTime + 0.05) endStall();
    });
  }

  // A stall still open counts up to now (it stays open).
  function measureOpenStall() {
    if (openStall) openStall.duration = round(now() - openStall.t);
  }

  // What the page's report function returns: the state (a stall still open measured up to
  // now), the hls.js version and `final(quality(video))`.
  function report(video, final) {
    measureOpenStall();
    const q = quality(video);
    return { ...state, hlsVersion: window.Hls ? window.Hls.version : null, final: final(q) };
  }

  return { state, now, round, bufferAhead, quality, watchStalls, report };
};
