#!/usr/bin/env bash
# Self-test of the harness against an ffmpeg-made fMP4 HLS stream (no Pulse Edge needed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440 \
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 30 -c:a aac -t 12 \
  -f hls -hls_segment_type fmp4 -hls_time 1 -hls_playlist_type event -hls_flags program_date_time \
  -master_pl_name master.m3u8 "$work/stream.m3u8"

node "$here/serve-dir.mjs" "$work" > "$work/port" &
server_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port="$(cat "$work/port")"

node "$here/play.mjs" "http://127.0.0.1:$port/master.m3u8" --seconds 6 > "$work/report.json"
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const s = r.summary || {};
console.log(JSON.stringify({ codecSupport: r.codecSupport, summary: s, harnessErrors: r.harnessErrors }, null, 1));
const ok = s.played && s.fatalErrors === 0 && s.decodedFrames > 0 && s.currentTimeAdvanced > 3;
if (!ok) { console.error("SELFTEST FAILED"); process.exit(1); }
console.error("SELFTEST OK");
' "$work/report.json"
