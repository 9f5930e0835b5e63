#!/usr/bin/python3
"""A test RTSP camera: GStreamer's RTSP server (Debian gir1.2-gst-rtsp-server-1.0
+ python3-gi) serving a moving test pattern and a sine tone at /cam.

  rtsp_camera.py --port 8554 [--codec h264|h265] [--user U --password P] [--size 320x180]

Run with Debian's /usr/bin/python3 (the gi bindings are a Debian package).
Prints "ready rtsp://127.0.0.1:<port>/cam" once it listens; runs until killed.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--codec", choices=["h264", "h265"], default="h264")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--size", default="320x180")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    Gst.init(None)
    if args.codec == "h265":
        video = ("x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=300 "
                 "! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=-1")
    else:
        video = ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=300 "
                 "! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1")
    launch = (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate=30/1 "
        f"! videoconvert ! {video} "
        "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample "
        "! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=64000 ! aacparse "
        "! rtpmp4gpay name=pay1 pt=97 )"
    )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
        basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password or "")
        auth.add_basic(basic, token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera-user", "media.factory.access", True)
        permissions.add_permission_for_role("camera-user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        sys.exit(1)
    print(f"ready rtsp://127.0.0.1:{args.port}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
