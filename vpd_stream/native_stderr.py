"""Keep MediaPipe / TF Lite start-up chatter off the user's terminal.

Their C++ code logs through absl/glog straight to file descriptor 2 before any logging is
initialised, so neither GLOG_minloglevel nor Python logging reaches it. We route fd 2
through a pipe and drop only lines that are that chatter (glog-style ``I``/``W`` lines,
TF Lite's delegate notice, absl's "before InitializeLog" notice); everything else —
our `error:` lines, progress bars, glog ``E``/``F`` errors — is forwarded at once. TF Lite
writes its notice in pieces, so an unfinished line that could still become chatter is held
until its newline (at most ``HOLD_S``); any other partial line (a progress bar) passes at
once. Set VPD_NATIVE_LOGS=1 to see all.
"""
from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import sys
import termios
import threading
import time

NOISE = re.compile(rb"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |(?:INFO: )?Created TensorFlow Lite |"
                   rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")
# TF Lite writes "INFO: " and its message separately; another thread's line can land between
# the two in one read. The CLI's own error line is given back its start.
OWN_LINE_AFTER_PIECE = re.compile(rb"^INFO: (?=(?:internal )?error: )")


NOISE_STARTS = (b"INFO: Created TensorFlow Lite ", b"WARNING: All log messages before absl::InitializeLog")
GLOG_START = re.compile(rb"^[IW](?:\d{0,4}|\d{4} [^\n]*)$")
HOLD_S = 0.25


def drop_noise(chunk: bytes) -> bytes:
    """The chunk without its chatter lines."""
    return b"".join(OWN_LINE_AFTER_PIECE.sub(b"", line) for line in chunk.splitlines(keepends=True)
                    if not NOISE.match(line))


def may_become_noise(partial: bytes) -> bool:
    """Could this unfinished line still turn out to be a chatter line?"""
    return bool(GLOG_START.match(partial)) or any(
        start.startswith(partial) or partial.startswith(start) for start in NOISE_STARTS)


def split_pending(data: bytes) -> tuple[bytes, bytes]:
    """(what to forward now, what to hold): hold only an unfinished line that may be chatter."""
    cut = data.rfind(b"\n") + 1
    head, tail = data[:cut], data[cut:]
    if tail and may_become_noise(tail):
        return drop_noise(head), tail
    return drop_noise(head) + tail, b""


def merge(pending: bytes, chunk: bytes) -> tuple[bytes, bytes]:
    """(forward now, hold) after ``chunk`` arrives while ``pending`` (a possible chatter
    start) is held. Several threads share fd 2: when ``chunk`` cannot continue the held
    piece (TF Lite wrote "INFO: ", then our error line came in between), the chunk is another
    writer's text and passes on its own while the piece waits for the rest of its line."""
    if pending:
        first = (pending + chunk).split(b"\n", 1)[0]
        complete = b"\n" in chunk
        continues = NOISE.match(first + b"\n") if complete else may_become_noise(first)
        if not continues:
            forward, hold = split_pending(chunk)
            if not hold:
                return forward, pending
            return forward + pending, hold  # two unfinished pieces: give the older one up
    return split_pending(pending + chunk)


class NativeStderrFilter:
    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None
        self._read_end: int | None = None
        self._busy = threading.Lock()  # held by the relay from reading a chunk to forwarding it

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
        self._read_end = read_end
        self._thread = threading.Thread(target=self._relay, args=(read_end,), name="stderr-filter", daemon=True)
        self._thread.start()

    def _relay(self, read_end: int) -> None:
        pending = b""
        while True:
            try:
                ready, _, _ = select.select([read_end], [], [], HOLD_S if pending else None)
            except OSError:
                ready = [read_end]
            with self._busy:
                try:
                    chunk = os.read(read_end, 65536) if ready else None
                except OSError:
                    chunk = b""
                if chunk is None:  # a held piece never finished its line: it was not chatter after all
                    kept, pending = pending, b""
                elif not chunk:
                    kept, pending = drop_noise(pending), b""
                else:
                    kept, pending = merge(pending, chunk)
                if kept and not self._write(kept):
                    break
            if chunk == b"":
                break
        os.close(read_end)

    def _write(self, data: bytes) -> bool:
        """Forward to the real stderr; False if writing failed. After stop() the relay only
        drains (a late writer, e.g. a child process, must not meet a closed pipe)."""
        if self._saved is None:
            return True
        try:
            os.write(self._saved, data)
        except OSError:
            return False
        return True

    def _drain(self, timeout: float = 2.0) -> None:
        """Wait until the relay has forwarded everything written to fd 2 so far."""
        if self._read_end is None or self._thread is None or not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                waiting = struct.unpack("i", fcntl.ioctl(self._read_end, termios.FIONREAD, b"\0\0\0\0"))[0]
            except OSError:
                return
            if not waiting:
                with self._busy:  # a chunk already read is forwarded before this returns
                    return
            time.sleep(0.002)

    def stop(self, keep_filtering: bool = False) -> None:
        """Put the real stderr back and let the relay drain what was already written.

        ``keep_filtering``: the program has said its last word (the CLI's ``error:`` line);
        leave fd 2 on the filter until the process exits, so chatter that native libraries
        print while they are torn down (MediaPipe's graph threads, after a model error) does
        not follow that line. The pipe is made non-blocking then: at interpreter exit the
        relay thread stops, and a late writer must not hang on a full pipe (it loses the
        text instead)."""
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        if keep_filtering:
            self._drain()
            try:
                os.set_blocking(2, False)
            except OSError:
                pass
            return
        os.dup2(self._saved, 2)  # the pipe's last writer in this process is gone: the relay sees EOF
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        os.close(self._saved)
        self._saved = None
