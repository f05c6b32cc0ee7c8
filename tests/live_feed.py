"""A real live feed for tests: MPEG-TS over TCP on 127.0.0.1 at real-time pace.

Every connection joins the broadcast at the current live position (aligned to a TS
packet) and is cut after ``cut_after`` seconds, like a flaky contribution link. An outage
of any length: ``cut()`` drops the connections now and ``refusing = True`` closes new ones
at once (the feed is down) until it is set back to False.
"""
from __future__ import annotations

import socket
import threading
import time

TS_PACKET = 188
CHUNK = TS_PACKET * 7  # what one UDP datagram of a real feed carries


class LiveFeedServer:
    def __init__(self, data: bytes, duration: float, cut_after: float | None = None,
                 max_connections: int | None = None) -> None:
        self.data = data
        self.byte_rate = len(data) / duration
        self.cut_after = cut_after
        self.max_connections = max_connections
        self.connections = 0
        self.refused = 0
        self.refusing = False
        self._cut = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "LiveFeedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()

    def cut(self) -> None:
        """Drop every open connection now."""
        self._cut.set()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.refusing or (self.max_connections is not None and self.connections >= self.max_connections):
                conn.close()  # the feed is down (for good, past max_connections)
                self.refused += 1
                continue
            self._cut.clear()
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        position = int((started - self._start) * self.byte_rate) % len(self.data)
        position -= position % TS_PACKET
        sent = 0
        try:
            while not self._stop.is_set() and not self._cut.is_set():
                elapsed = time.monotonic() - started
                if self.cut_after is not None and elapsed >= self.cut_after:
                    break
                due = int(elapsed * self.byte_rate) + CHUNK  # real-time pace, one chunk ahead
                while sent < due:
                    chunk = self.data[position: position + CHUNK]
                    if not chunk:
                        position = 0  # loop the clip: the broadcast goes on
                        continue
                    conn.sendall(chunk)
                    position += len(chunk)
                    sent += len(chunk)
                time.sleep(0.005)
        except OSError:
            pass  # the client went away
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
