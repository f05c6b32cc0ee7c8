"""Keep MediaPipe / TF Lite start-up chatter off the user's terminal.

Their C++ code logs through absl/glog straight to file descriptor 2 before any logging is
initialised, so neither GLOG_minloglevel nor Python logging reaches it. We route fd 2
through a pipe and drop only lines that are that chatter (glog-style ``I``/``W`` lines,
TF Lite's delegate notice, absl's "before InitializeLog" notice); everything else —
our `error:` lines, progress bars, glog ``E``/``F`` errors — is forwarded at once, chunk by
chunk, so partial lines (progress bars) are not held back. Set VPD_NATIVE_LOGS=1 to see all.
"""
from __future__ import annotations

import os
import re
import sys
import threading

NOISE = re.compile(rb"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |INFO: Created TensorFlow Lite |"
                   rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


def drop_noise(chunk: bytes) -> bytes:
    """The chunk without its chatter lines (glog writes each message whole, in one write)."""
    return b"".join(line for line in chunk.splitlines(keepends=True) if not NOISE.match(line))


class NativeStderrFilter:
    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if os.environ.get("VPD_NATIVE_LOGS") == "1":
            return
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded, closed): nothing to filter
            self._saved = None
            return
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._relay, args=(read_end,), name="stderr-filter", daemon=True)
        self._thread.start()

    def _relay(self, read_end: int) -> None:
        saved = self._saved
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            kept = drop_noise(chunk)
            if kept and saved is not None:
                try:
                    os.write(saved, kept)
                except OSError:
                    break
        os.close(read_end)

    def stop(self) -> None:
        """Put the real stderr back and let the relay drain what was already written."""
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)  # the pipe's last writer in this process is gone: the relay sees EOF
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        os.close(self._saved)
        self._saved = None
