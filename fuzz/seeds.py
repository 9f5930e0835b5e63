#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into testdata/fuzz/<target>/.

Seeds are what each parser sees from a real client: RTMP chunk streams as
ffmpeg/OBS send them, AMF0 commands, FLV tags, avcC/SPS from x264, AAC and
MP3 headers, a VP8 keyframe from libvpx, a Chromium-like WHIP offer, player
query strings and valid and forged playback tokens. ffmpeg (a test
dependency) encodes the media samples. `make fuzz` then grows the corpus and
merges what adds coverage back into the same directories.

Run from the repository root: python3 fuzz/seeds.py
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "fuzz")

# Must match src/control/tokens/fuzz.rs.
SERVER_SECRET = bytes([0x5E] * 32)
APP_SECRET = bytes([0xA5] * 32)
STREAM = "st-fuzz"


def write(target, name, data):
    directory = os.path.join(ROOT, target)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- AMF0

def amf_num(n):
    return b"\x00" + struct.pack(">d", n)


def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_key(k):
    b = k.encode()
    return struct.pack(">H", len(b)) + b


def amf_obj(props, marker=b"\x03"):
    out = marker
    if marker == b"\x08":
        out += struct.pack(">I", len(props))
    for k, v in props:
        out += amf_key(k) + v
    return out + b"\x00\x00\x09"


AMF_NULL = b"\x05"
CONNECT = amf_str("connect") + amf_num(1) + amf_obj([
    ("app", amf_str("live")),
    ("type", amf_str("nonprivate")),
    ("flashVer", amf_str("FMLE/3.0 (compatible; FMSc/1.0)")),
    ("tcUrl", amf_str("rtmp://127.0.0.1:1935/live")),
    ("fpad", b"\x01\x00"),
    ("capabilities", amf_num(15)),
    ("audioCodecs", amf_num(4071)),
    ("videoCodecs", amf_num(252)),
    ("videoFunction", amf_num(1)),
    ("objectEncoding", amf_num(0)),
])
RELEASE = amf_str("releaseStream") + amf_num(2) + AMF_NULL + amf_str("key")
FCPUBLISH = amf_str("FCPublish") + amf_num(3) + AMF_NULL + amf_str("key")
CREATE_STREAM = amf_str("createStream") + amf_num(4) + AMF_NULL
PUBLISH = amf_str("publish") + amf_num(5) + AMF_NULL + amf_str("key?token=abc") + amf_str("live")
METADATA = amf_str("@setDataFrame") + amf_str("onMetaData") + amf_obj([
    ("duration", amf_num(0)),
    ("width", amf_num(1280)),
    ("height", amf_num(720)),
    ("videodatarate", amf_num(2500)),
    ("framerate", amf_num(30)),
    ("videocodecid", amf_num(7)),
    ("audiocodecid", amf_num(10)),
    ("stereo", b"\x01\x01"),
    ("encoder", amf_str("Lavf60.16.100")),
    ("undefined", b"\x06"),
], marker=b"\x08")
STRICT_ARRAY = b"\x0a" + struct.pack(">I", 3) + amf_num(1) + amf_str("x") + AMF_NULL
NESTED = b"".join([b"\x03" + amf_key("o")] * 15) + AMF_NULL + b"\x00\x00\x09" * 15


def amf_seeds():
    for name, data in [("connect", CONNECT), ("release_stream", RELEASE), ("fcpublish", FCPUBLISH),
                       ("create_stream", CREATE_STREAM), ("publish", PUBLISH), ("metadata", METADATA),
                       ("strict_array", STRICT_ARRAY), ("nested_15", NESTED),
                       ("long_string", b"\x0c" + struct.pack(">I", 5) + b"hello"),
                       ("truncated", CONNECT[:40])]:
        write("amf0", name, data)


# ---------------------------------------------------------------- media samples

def ffmpeg(args, out):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y"] + args + [out], check=True)
    with open(out, "rb") as f:
        return f.read()


def nal_units(annexb):
    parts = annexb.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [p for p in parts if p]


def avcc(sps, pps):
    return (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps
            + b"\x01" + struct.pack(">H", len(pps)) + pps)


def media_samples(tmp):
    lavfi = ["-f", "lavfi", "-i"]
    h264 = {
        "high_cqm_640x360": lavfi + ["testsrc=size=640x360:rate=30", "-frames", "2", "-pix_fmt", "yuv420p",
                                      "-c:v", "libx264", "-profile:v", "high", "-x264-params", "cqm=jvt",
                                      "-f", "h264"],
        "baseline_1920x1080": lavfi + ["testsrc=size=1920x1080:rate=30", "-frames", "2", "-pix_fmt", "yuv420p",
                                        "-c:v", "libx264", "-profile:v", "baseline", "-f", "h264"],
        "interlaced_444_320x240": lavfi + ["testsrc=size=320x240:rate=30", "-frames", "2", "-pix_fmt", "yuv444p",
                                            "-c:v", "libx264", "-flags", "+ildct+ilme", "-x264-params",
                                            "interlaced=1", "-f", "h264"],
    }
    samples = {}
    for name, args in h264.items():
        units = nal_units(ffmpeg(args, os.path.join(tmp, name + ".h264")))
        sps = next(u for u in units if u[0] & 0x1F == 7)
        pps = next(u for u in units if u[0] & 0x1F == 8)
        idr = next(u for u in units if u[0] & 0x1F == 5)
        samples[name] = (sps, pps, idr[:600])
    ivf = ffmpeg(lavfi + ["testsrc=size=176x144:rate=30", "-frames", "3", "-c:v", "libvpx", "-f", "ivf"],
                 os.path.join(tmp, "vp8.ivf"))
    frames, at = [], 32
    while at + 12 <= len(ivf):
        size = struct.unpack("<I", ivf[at:at + 4])[0]
        frames.append(ivf[at + 12:at + 12 + size])
        at += 12 + size
    samples["vp8"] = frames
    audio = {}
    for name, args in {
        "mp3_48k_stereo": ["sine=frequency=440:sample_rate=48000", "-t", "0.1", "-c:a", "libmp3lame"],
        "mp3_22k_mono": ["sine=frequency=440:sample_rate=22050", "-t", "0.1", "-ac", "1", "-c:a", "libmp3lame"],
        "mp3_8k": ["sine=frequency=440:sample_rate=8000", "-t", "0.2", "-c:a", "libmp3lame"],
    }.items():
        data = ffmpeg(lavfi + args + ["-write_xing", "0", "-id3v2_version", "0", "-f", "mp3"],
                      os.path.join(tmp, name + ".mp3"))
        audio[name] = data[:400]
    data = ffmpeg(lavfi + ["sine=frequency=440:sample_rate=44100", "-t", "0.1", "-c:a", "mp2", "-f", "mp2"],
                  os.path.join(tmp, "a.mp2"))
    audio["mp2_44k"] = data[:400]
    samples["audio"] = audio
    return samples


ASCS = {
    "aac_lc_44k_stereo": bytes([0x12, 0x10]),
    "aac_lc_48k_stereo": bytes([0x11, 0x90]),
    "aac_lc_48k_mono": bytes([0x11, 0x88]),
    "he_aac_sbr": bytes([0x2B, 0x92, 0x08, 0x00]),
    "escape_object_type": bytes([0xF8, 0x1E, 0x20]),
    "explicit_rate": bytes([0x17, 0x80, 0x0B, 0xB8, 0x10]),
    "channel_config_7": bytes([0x11, 0xB8]),
}


def media_seeds(samples):
    for name in ("high_cqm_640x360", "baseline_1920x1080", "interlaced_444_320x240"):
        sps, pps, _ = samples[name]
        write("avc_config", "avcc_" + name, avcc(sps, pps))
        write("avc_config", "sps_" + name, sps)
    for name, asc in ASCS.items():
        write("aac_config", name, asc)
    for i, frame in enumerate(samples["vp8"][:2]):
        write("vp8", "libvpx_frame_%d" % i, frame[:64])
    for name, data in samples["audio"].items():
        write("mpeg_audio", name, data[:64])
        write("mpeg_audio", name + "_after_garbage", b"\x00\xff\xe0\x12" + data[:60])


# ---------------------------------------------------------------- FLV tags

def flv_tags(samples):
    sps, pps, idr = samples["high_cqm_640x360"]
    record = avcc(sps, pps)
    audio = samples["audio"]
    tags = {
        "avc_sequence_header": (1, b"\x17\x00\x00\x00\x00" + record),
        "avc_keyframe": (7, b"\x17\x01\x00\x00\x21" + struct.pack(">I", len(idr)) + idr[:200]),
        "avc_inter_2byte_lengths": (3, b"\x27\x01\xff\xff\xf0" + struct.pack(">H", 3) + b"\x41\x9a\x00"),
        "avc_end_of_sequence": (1, b"\x17\x02\x00\x00\x00"),
        "video_info_frame": (1, b"\x57\x00"),
        "hevc_legacy": (1, b"\x1c\x00\x00\x00\x00"),
        "ertmp_hvc1_sequence_start": (1, b"\x90hvc1\x01\x02\x03"),
        "ertmp_av01_coded_frames": (1, b"\x91av01\x00"),
        "ertmp_vp09": (1, b"\xa1vp09"),
        "aac_sequence_header": (0, b"\xaf\x00" + ASCS["aac_lc_44k_stereo"]),
        "aac_raw": (0, b"\xaf\x01\x21\x10\x04\x60\x8c\x1c"),
        "mp3_48k": (0, b"\x2f" + audio["mp3_48k_stereo"][:200]),
        "mp3_8khz_format": (0, b"\xe2" + audio["mp3_8k"][:100]),
        "mp3_no_header": (0, b"\x2e\x00\x00\x00"),
        "mp2_in_mp3_tag": (0, b"\x2f" + audio["mp2_44k"][:100]),
        "speex": (0, b"\xb6\x00"),
        "opus_ex_audio": (0, b"\x90Opus\x00"),
    }
    for name, (selector, tag) in tags.items():
        write("flv_tag", name, bytes([selector]) + tag)
    return record


# ---------------------------------------------------------------- RTMP chunk streams

def chunk_basic(fmt, csid):
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1]) + struct.pack("<H", csid - 64)


def message(csid, type_id, stream_id, timestamp, payload, chunk_size=128, repeat_ext=True):
    """A whole message as type 0 + type 3 chunks (extended timestamp when needed,
    repeated on the type 3 chunks unless `repeat_ext` is false, as some clients do)."""
    field = min(timestamp, 0xFFFFFF)
    ext = struct.pack(">I", timestamp) if timestamp >= 0xFFFFFF else b""
    out = chunk_basic(0, csid) + struct.pack(">I", field)[1:] + struct.pack(">I", len(payload))[1:]
    out += bytes([type_id]) + struct.pack("<I", stream_id) + ext
    for i in range(0, max(len(payload), 1), chunk_size):
        if i:
            out += chunk_basic(3, csid) + (ext if repeat_ext else b"")
        out += payload[i:i + chunk_size]
    return out


def chunk_seeds(record):
    set_chunk = message(2, 1, 0, 0, struct.pack(">I", 4096))
    window = message(2, 5, 0, 0, struct.pack(">I", 2500000))
    handshake_done = set_chunk + message(3, 20, 0, 0, CONNECT, 4096) + window
    publish = (message(3, 20, 0, 0, RELEASE, 4096) + message(3, 20, 0, 0, FCPUBLISH, 4096)
               + message(3, 20, 0, 0, CREATE_STREAM, 4096) + message(4, 20, 1, 0, PUBLISH, 4096))
    media = (message(4, 18, 1, 0, METADATA, 4096)
             + message(6, 9, 1, 0, b"\x17\x00\x00\x00\x00" + record, 4096)
             + message(4, 8, 1, 0, b"\xaf\x00" + ASCS["aac_lc_44k_stereo"], 4096))
    # Video at the default chunk size, then type 1 / type 2 / type 3 new-message headers.
    frame = b"\x27\x01\x00\x00\x00" + struct.pack(">I", 295) + bytes(range(256)) + bytes(39)
    deltas = message(6, 9, 1, 1000, frame)
    deltas += chunk_basic(1, 6) + struct.pack(">I", 33)[1:] + struct.pack(">I", 10)[1:] + b"\x09" + bytes(10)
    deltas += chunk_basic(2, 6) + struct.pack(">I", 33)[1:] + bytes(10)
    deltas += chunk_basic(3, 6) + bytes(10)
    # Extended timestamps (type 0 and the type 3 continuations repeat them).
    extended = message(6, 9, 1, 0x01000000, frame)
    extended_omitted = message(6, 9, 1, 0x01000000, frame, repeat_ext=False)
    # Timestamps that jump by 0x7fffffff per frame (the clock overflow of issue 14).
    jumps = b"".join(message(6, 9, 1, (i * 0x7FFFFFFF) & 0xFFFFFFFF, frame[:40]) for i in range(4))
    # Interleaved audio and video, with an Abort of a partial message.
    interleaved = (message(4, 8, 1, 5, b"\xaf\x01" + bytes(200))[:140] + message(6, 9, 1, 5, frame[:100])
                   + message(2, 2, 0, 0, struct.pack(">I", 4)) + message(4, 8, 1, 7, b"\xaf\x01\x21"))
    # Two- and three-byte chunk stream ids.
    wide_ids = message(64, 8, 1, 0, b"\xaf\x01\x00") + message(319, 8, 1, 0, b"\xaf\x01\x00") \
        + message(320, 9, 1, 0, b"\x27\x01\x00\x00\x00") + message(65599, 9, 1, 0, b"\x27\x01\x00\x00\x00")
    streams = {
        "ffmpeg_connect_publish": handshake_done + publish + media,
        "default_chunk_size_deltas": deltas,
        "extended_timestamps": extended,
        "extended_timestamps_not_repeated": extended_omitted,
        "timestamp_jumps": publish + jumps,
        "interleaved_abort": interleaved,
        "wide_chunk_stream_ids": wide_ids,
        "set_chunk_size_1": message(2, 1, 0, 0, struct.pack(">I", 1)) + message(3, 20, 0, 0, CREATE_STREAM, 1),
        "set_chunk_size_zero": message(2, 1, 0, 0, struct.pack(">I", 0)),
        "too_large": chunk_basic(0, 6) + b"\x00\x00\x00\xff\xff\xff\x09\x01\x00\x00\x00" + bytes(64),
        "type3_first": b"\xc6" + bytes(20),
    }
    # Pattern byte: 0 whole, 1 byte by byte, 2 seven bytes, 3+ (n >> 2) + 1 bytes.
    for name, wire in streams.items():
        write("rtmp_chunk", name, b"\x00" + wire)
    write("rtmp_chunk", "ffmpeg_connect_publish_bytewise", b"\x01" + handshake_done + publish[:300])
    write("rtmp_chunk", "deltas_split_7", b"\x02" + deltas)
    write("rtmp_chunk", "extended_split_13", bytes([3 | (12 << 2)]) + extended)


# ---------------------------------------------------------------- WHIP

CHROMIUM_OFFER = "\r\n".join([
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 5e1b2c3d",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1 1 udp 2122260223 192.0.2.10 54321 typ host generation 0 network-id 1",
    "a=ice-ufrag:Fz3k",
    "a=ice-pwd:q8Vb1Ne2Rk5Yt7Ui9Op0As1D",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=sendonly",
    "a=msid:5e1b2c3d 6f7a8b9c",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1001 cname:fzcname",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Fz3k",
    "a=ice-pwd:q8Vb1Ne2Rk5Yt7Ui9Op0As1D",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:3 urn:3gpp:video-orientation",
    "a=sendonly",
    "a=msid:5e1b2c3d 0d1e2f3a",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rtpmap:45 AV1/90000",
    "a=ssrc-group:FID 2001 2002",
    "a=ssrc:2001 cname:fzcname",
    "a=ssrc:2002 cname:fzcname",
    "",
])

TRICKLE = "\r\n".join([
    "a=ice-ufrag:Fz3k",
    "a=ice-pwd:q8Vb1Ne2Rk5Yt7Ui9Op0As1D",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0",
    "a=mid:0",
    "a=candidate:1 1 udp 2122260223 192.0.2.10 54321 typ host",
    "a=candidate:2 1 tcp 1518280447 192.0.2.10 9 typ host tcptype active",
    "a=end-of-candidates",
    "",
])


def whip_seeds():
    write("whip_offer", "chromium_vp8_h264_opus", CHROMIUM_OFFER)
    video_only = CHROMIUM_OFFER.split("m=audio")[0] + "m=video" + CHROMIUM_OFFER.split("m=video")[1]
    write("whip_offer", "video_only", video_only)
    write("whip_offer", "recvonly", CHROMIUM_OFFER.replace("a=sendonly", "a=recvonly"))
    write("whip_offer", "trickle_fragment", TRICKLE)
    write("whip_offer", "not_sdp", "hello")


# ---------------------------------------------------------------- playlist queries

def query_seeds():
    queries = {
        "blocking_part": "token=eyJhbGciOiJIUzI1NiJ9.e30.sig&vs=vs_1&_HLS_msn=42&_HLS_part=2",
        "blocking_segment_skip": "_HLS_msn=43&_HLS_skip=YES",
        "skip_v2": "_HLS_skip=v2&_cb=1733580000",
        "percent_encoded": "tok%65n=a%2Bb+c&_HLS_msn=%34%32&_HLS_part=%30",
        "repeated_last_wins": "_HLS_msn=1&_HLS_msn=41&_HLS_part=999",
        "part_without_msn": "_HLS_part=1",
        "huge": "_HLS_msn=18446744073709551615&_HLS_part=18446744073709551615",
        "bad_escape": "token=%zz%&_HLS_skip=%",
        "empty": "",
    }
    for name, q in queries.items():
        write("playlist_query", name, q)


# ---------------------------------------------------------------- tokens

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_seeds():
    far, past = 4102444800, 946684800
    claims = {"sub": STREAM, "exp": far, "iat": past}

    def signed(mode, header, body):
        return bytes([mode]) + json.dumps(header).encode() + b"\n" + json.dumps(body).encode()

    def raw_hs256(header, body, secret):
        head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(body).encode())
        sig = hmac.new(secret, head.encode(), hashlib.sha256).digest()
        return b"\x00" + (head + "." + b64(sig)).encode()

    seeds = {
        "server_valid": signed(2, {"alg": "HS256", "typ": "JWT"}, dict(claims, sid="viewer-1")),
        "app_valid": signed(3, {"alg": "HS256", "kid": "hs-1"}, claims),
        "server_valid_raw": raw_hs256({"alg": "HS256"}, claims, SERVER_SECRET),
        "expired": signed(2, {"alg": "HS256"}, dict(claims, exp=past)),
        "not_yet_valid": signed(2, {"alg": "HS256"}, dict(claims, nbf=far)),
        "wrong_stream": signed(2, {"alg": "HS256"}, dict(claims, sub="other")),
        "missing_sub": signed(2, {"alg": "HS256"}, {"exp": far}),
        "claims_wrong_types": signed(2, {"alg": "HS256"}, {"sub": 5, "exp": "soon", "iat": None}),
        "app_key_for_server_token": signed(3, {"alg": "HS256"}, claims),
        "unknown_kid": signed(3, {"alg": "HS256", "kid": "nope"}, claims),
        "hs256_under_es256_kid": signed(3, {"alg": "HS256", "kid": "es-1"}, claims),
        "hs256_under_rs256_kid": signed(3, {"alg": "HS256", "kid": "rs-1"}, claims),
        "alg_none": b"\x01" + json.dumps({"alg": "none"}).encode() + b"\n" + json.dumps(claims).encode() + b"\n",
        "es256_kid_bad_signature": b"\x01" + json.dumps({"alg": "ES256", "kid": "es-1"}).encode() + b"\n"
        + json.dumps(claims).encode() + b"\n" + bytes(64),
        "rs256_kid_bad_signature": b"\x01" + json.dumps({"alg": "RS256", "kid": "rs-1"}).encode() + b"\n"
        + json.dumps(claims).encode() + b"\n" + bytes(256),
        "two_parts": b"\x00eyJhbGciOiJIUzI1NiJ9.e30",
        "garbage": b"\x00not a token at all",
    }
    for name, data in seeds.items():
        write("token", name, data)


def main():
    amf_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        samples = media_samples(tmp)
    media_seeds(samples)
    record = flv_tags(samples)
    chunk_seeds(record)
    whip_seeds()
    query_seeds()
    token_seeds()


if __name__ == "__main__":
    main()
