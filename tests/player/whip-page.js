// The glass-to-glass stamp (same layout as bench/latency.py burns in and glass-page.js reads):
// the top 72/1080 of the picture is 32 black/white cells, 24 bits of the capture time in ms
// mod 2^24 (MSB first), then the check byte (b0 + 3*b1 + 7*b2 + 90) mod 256. Drawn on a canvas
// at each frame, with a moving bar below so the encoder has motion to code; the canvas is
// captured (captureStream) and Chromium's fake microphone gives the audio.
async function stampedMedia(cfg) {
  const canvas = document.createElement('canvas');
  canvas.width = cfg.width;
  canvas.height = cfg.height;
  const ctx = canvas.getContext('2d');
  const strip = Math.round((cfg.height * 72) / 1080);
  const cellWidth = cfg.width / 32;
  let frame = 0;
  const draw = () => {
    const now = Date.now();
    const time = now % 16777216;
    const check = ((time & 0xff) + 3 * ((time >> 8) & 0xff) + 7 * ((time >> 16) & 0xff) + 90) % 256;
    const word = time * 256 + check;
    ctx.fillStyle = '#406080';
    ctx.fillRect(0, 0, cfg.width, cfg.height);
    ctx.fillStyle = '#e0c040';
    ctx.fillRect((frame * 7) % cfg.width, strip, cfg.width / 8, cfg.height - strip);
    for (let cell = 0; cell < 32; cell++) {
      const bit = Math.floor(word / 2 ** (31 - cell)) % 2;
      ctx.fillStyle = bit ? '#ffffff' : '#000000';
      ctx.fillRect(Math.floor(cell * cellWidth), 0, Math.ceil(cellWidth), strip);
    }
    frame += 1;
  };
  draw();
  setInterval(draw, 1000 / cfg.fps);
  const video = canvas.captureStream(cfg.fps).getVideoTracks()[0];
  // Keep the resolution when the bitrate is short (WebRTC would otherwise scale the picture down).
  video.contentHint = 'detail';
  const audio = (await navigator.mediaDevices.getUserMedia({ audio: true })).getAudioTracks()[0];
  return new MediaStream([video, audio]);
}

// Runs in the page: publishes getUserMedia (fake devices) over WHIP and
// reports what the HTTP exchange and the peer connection did.
window.whipPublish = async (cfg) => {
  const report = { steps: [], post: null, patches: [], deleteStatus: null, states: [], stats: null, error: null };
  const t0 = performance.now();
  const step = (what) => report.steps.push({ t: Number(((performance.now() - t0) / 1000).toFixed(3)), what });
  let pc;
  try {
    const media = cfg.source === 'stamp'
      ? await stampedMedia(cfg)
      : await navigator.mediaDevices.getUserMedia({
        video: { width: cfg.width, height: cfg.height, frameRate: cfg.fps },
        audio: true,
      });
    step('getUserMedia');
    pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    pc.addEventListener('connectionstatechange', () => {
      report.states.push(pc.connectionState);
      step(`connection ${pc.connectionState}`);
    });
    for (const track of media.getTracks()) {
      const init = { direction: 'sendonly', streams: [media] };
      if (track.kind === 'video' && cfg.maxKbps) init.sendEncodings = [{ maxBitrate: cfg.maxKbps * 1000 }];
      const transceiver = pc.addTransceiver(track, init);
      if (track.kind === 'video') {
        const codecs = RTCRtpSender.getCapabilities('video').codecs;
        const wanted = codecs.filter((c) => c.mimeType.toLowerCase() === `video/${cfg.codec}`);
        if (wanted.length === 0) throw new Error(`this browser cannot send ${cfg.codec}`);
        transceiver.setCodecPreferences([...wanted, ...codecs.filter((c) => !wanted.includes(c))]);
      }
    }
    const pending = [];
    let gatheringDone;
    const gathered = new Promise((resolve) => { gatheringDone = resolve; });
    pc.addEventListener('icecandidate', (e) => {
      if (e.candidate) pending.push(e.candidate);
      else gatheringDone();
    });
    await pc.setLocalDescription(await pc.createOffer());
    // Without trickle the offer carries every candidate; with it, they follow in PATCHes.
    if (!cfg.trickle) await Promise.race([gathered, new Promise((r) => setTimeout(r, 5000))]);
    const endpoint = cfg.auth === 'path' ? `${cfg.url.replace(/\/$/, '')}/${encodeURIComponent(cfg.key)}` : cfg.url;
    const headers = { 'Content-Type': 'application/sdp' };
    if (cfg.auth === 'bearer') headers.Authorization = `Bearer ${cfg.key}`;
    const response = await fetch(endpoint, { method: 'POST', headers, body: pc.localDescription.sdp });
    const answer = await response.text();
    const location = response.headers.get('Location');
    const etag = response.headers.get('ETag');
    report.post = {
      status: response.status,
      location,
      etag,
      link: response.headers.get('Link'),
      contentType: response.headers.get('Content-Type'),
      answerCandidates: answer.split('\n').filter((l) => l.startsWith('a=candidate:')).length,
      body: response.status === 201 ? null : answer.slice(0, 500),
    };
    step(`POST ${response.status}`);
    if (response.status !== 201) return report;
    const resource = new URL(location, endpoint).toString();
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    if (cfg.trickle) {
      await Promise.race([gathered, new Promise((r) => setTimeout(r, 5000))]);
      const mid = pc.getTransceivers()[0].mid;
      const ufrag = pc.localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1];
      const pwd = pc.localDescription.sdp.match(/a=ice-pwd:(\S+)/)[1];
      const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, `m=audio 9 UDP/TLS/RTP/SAVPF 0`, `a=mid:${mid}`];
      for (const c of pending) lines.push(`a=${c.candidate}`);
      lines.push('a=end-of-candidates');
      const patch = await fetch(resource, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': etag },
        body: `${lines.join('\r\n')}\r\n`,
      });
      report.patches.push({ status: patch.status, candidates: pending.length });
      step(`PATCH ${patch.status}`);
    }
    const connected = await new Promise((resolve) => {
      const deadline = setTimeout(() => resolve(false), 15000);
      const check = () => {
        if (pc.connectionState === 'connected') { clearTimeout(deadline); resolve(true); }
        else if (pc.connectionState === 'failed') { clearTimeout(deadline); resolve(false); }
      };
      pc.addEventListener('connectionstatechange', check);
      check();
    });
    if (!connected) throw new Error(`peer connection did not connect (${pc.connectionState})`);
    await new Promise((r) => setTimeout(r, cfg.seconds * 1000));
    const stats = { video: null, audio: null };
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp') {
        stats[s.kind] = {
          bytesSent: s.bytesSent, packetsSent: s.packetsSent, framesEncoded: s.framesEncoded,
          keyFramesEncoded: s.keyFramesEncoded, nackCount: s.nackCount, pliCount: s.pliCount, firCount: s.firCount,
          frameWidth: s.frameWidth, frameHeight: s.frameHeight, encoder: s.encoderImplementation,
        };
      } else if (s.type === 'codec') {
        (stats.codecs ||= []).push(s.mimeType);
      }
    });
    report.stats = stats;
    if (cfg.deleteAtEnd) {
      const del = await fetch(resource, { method: 'DELETE' });
      report.deleteStatus = del.status;
      step(`DELETE ${del.status}`);
    }
  } catch (err) {
    report.error = String(err && err.message ? err.message : err);
  } finally {
    if (pc) pc.close();
  }
  return report;
};
