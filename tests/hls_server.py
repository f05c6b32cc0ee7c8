"""A real HLS publisher for tests: MPEG-TS segments written by PyAV's HLS muxer, a playlist
that advances in real time, served over HTTP by Python's http.server on 127.0.0.1.

``HlsServer(directory)`` serves every file of ``directory`` (so a plain ``clip.mp4`` put
there is a plain http file) and ``live.m3u8``: the sliding window of the last ``window``
segments published so far, one more every segment duration, like
``ffmpeg -re -i clip -f hls -hls_list_size 5 -hls_flags delete_segments``. When the
publisher stops (``stop_after`` segments, or all of them), the playlist ends with
``#EXT-X-ENDLIST``. ``vod.m3u8`` is the complete playlist from the start. With
``ranges=True`` files are also served in byte ranges (206), as web servers do and
http.server does not: an MP4 whose index is at its end can only be read that way.
"""
from __future__ import annotations

import re
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av

from clips import _encode


def write_hls(directory: Path, seconds: float = 12.0, fps: int = 25, size: tuple[int, int] = (160, 120),
              segment_seconds: int = 1) -> list[tuple[float, str]]:
    """Encode ``seconds`` of the test pattern into 1-second TS segments; (duration, name) each."""
    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "all.m3u8"
    with av.open(str(playlist), mode="w", format="hls",
                 options={"hls_time": str(segment_seconds), "hls_list_size": "0",
                          "hls_segment_filename": str(directory / "seg%03d.ts")}) as container:
        _encode(container, "libx264", fps, int(seconds * fps), size[0], size[1], fps * segment_seconds, None)
    segments = []
    duration = None
    for line in playlist.read_text().splitlines():
        m = re.match(r"#EXTINF:([\d.]+)", line)
        if m:
            duration = float(m.group(1))
        elif line and not line.startswith("#"):
            segments.append((duration or float(segment_seconds), line.strip()))
    return segments


class HlsServer:
    def __init__(self, directory: Path, segments: list[tuple[float, str]], window: int = 5,
                 stop_after: int | None = None, ranges: bool = False, freeze: bool = False) -> None:
        self.directory = Path(directory)
        self.ranges = ranges
        self.freeze = freeze  # when the publisher stops, the playlist just stops changing (no ENDLIST)
        self.segments = segments
        self.window = window
        self.stop_after = len(segments) if stop_after is None else stop_after
        self.requests: list[str] = []
        self._start = time.monotonic()
        handler = partial(_Handler, self, directory=str(self.directory))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def __enter__(self) -> "HlsServer":
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def published(self) -> int:
        """Segments the publisher has finished so far (real time, one per segment duration)."""
        elapsed, count = time.monotonic() - self._start, 0
        for duration, _ in self.segments[: self.stop_after]:
            if elapsed < duration:
                break
            elapsed -= duration
            count += 1
        return max(1, count)

    @property
    def ended(self) -> bool:
        return self.published() >= self.stop_after

    def live_playlist(self) -> str:
        n = self.published()
        first = max(0, n - self.window)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3",
                 f"#EXT-X-TARGETDURATION:{int(max(d for d, _ in self.segments) + 0.999)}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for duration, name in self.segments[first:n]:
            lines += [f"#EXTINF:{duration:.6f},", name]
        if n >= self.stop_after and not self.freeze:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def vod_playlist(self) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:VOD",
                 f"#EXT-X-TARGETDURATION:{int(max(d for d, _ in self.segments) + 0.999)}", "#EXT-X-MEDIA-SEQUENCE:0"]
        for duration, name in self.segments:
            lines += [f"#EXTINF:{duration:.6f},", name]
        return "\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n"


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, server_state: HlsServer, *args, **kwargs) -> None:
        self.state = server_state
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self.state.requests.append(self.path)
        playlists = {"/live.m3u8": self.state.live_playlist, "/vod.m3u8": self.state.vod_playlist}
        if self.path in playlists:
            body = playlists[self.path]().encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.apple.mpegurl")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)
            return
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        path = Path(self.translate_path(self.path))
        if self.state.ranges and wanted and path.is_file():
            size = path.stat().st_size
            start = int(wanted.group(1))
            end = min(int(wanted.group(2)) if wanted.group(2) else size - 1, size - 1)
            if start >= size:
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Type", self.guess_type(str(path)))
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with open(path, "rb") as f:
                f.seek(start)
                remaining = end - start + 1
                try:
                    while remaining > 0:
                        chunk = f.read(min(remaining, 1 << 16))
                        self.wfile.write(chunk)
                        remaining -= len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client seeks elsewhere and drops this answer
            return
        try:
            super().do_GET()
        except (BrokenPipeError, ConnectionResetError):
            pass
