"""A real RTSP server for tests: GStreamer's gst-rtsp-server (Debian's, through python3-gi).

Run with the system Python that has ``gi`` (not the project's venv):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 [--user u --password p]

It serves ``rtsp://127.0.0.1:PORT/live``: a live 160×120, 25 fps test picture (a moving
ball), JPEG over RTP (GStreamer's base and good plugins only). With ``--user``, clients must
authenticate (basic); others get 401. Prints ``ready`` once it listens. ``make rtsp-deps``
installs the packages (Debian): gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi
gstreamer1.0-plugins-good.
"""
from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=160,height=120,framerate=25/1 "
          "! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
