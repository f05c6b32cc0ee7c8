"""MediaPipe/TF Lite chatter on fd 2 is dropped; everything else reaches stderr intact."""
from __future__ import annotations

import os
import subprocess
import sys

from vpd_stream.native_stderr import drop_noise, split_pending

CHATTER = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
           b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
           b"W0000 00:00:1795294499.820452   30371 inference_feedback_manager.cc:114] Feedback manager "
           b"requires a model with a single signature inference.\n"
           b"I0000 00:00:1795294502.670637   30374 gl_context.cc:357] GL version: 2.1\n")


def test_drop_noise_keeps_errors_and_partial_lines() -> None:
    kept = b"error: bad.mp4: not a video\n"
    fatal = b"E0000 00:00:1795294502.670637   30374 calculator_graph.cc:887] a real error\n"
    assert drop_noise(CHATTER + kept + fatal + b" 40%|####   \r") == kept + fatal + b" 40%|####   \r"


def test_pieces_of_a_chatter_line_are_held_until_its_newline() -> None:
    assert split_pending(b"ok\nINFO: ") == (b"ok\n", b"INFO: ")
    assert split_pending(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") == (
        b"", b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    assert split_pending(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n") == (b"", b"")
    assert split_pending(b"W0000 00:00:17.8 1 a.cc:1] x") == (b"", b"W0000 00:00:17.8 1 a.cc:1] x")
    assert split_pending(b"\rImporting 3/5") == (b"\rImporting 3/5", b"")  # progress passes at once
    assert split_pending(b"INFO: something else") == (b"INFO: something else", b"")


def test_filter_routes_fd2_and_restores_it() -> None:
    script = (
        "import os, sys\n"
        "from vpd_stream.native_stderr import NativeStderrFilter\n"
        "f = NativeStderrFilter(); f.start()\n"
        f"os.write(2, {CHATTER!r})\n"
        "for piece in (b'INFO: ', b'Created TensorFlow Lite XNNPACK delegate for CPU.', b'\\n'):\n"
        "    os.write(2, piece)\n"
        "sys.stderr.write('progress 1/2\\r'); sys.stderr.flush()\n"
        "print('error: one line', file=sys.stderr)\n"
        "f.stop()\n"
        "os.write(2, b'after\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == b"progress 1/2\rerror: one line\nafter\n"
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                           env={**os.environ, "VPD_NATIVE_LOGS": "1"})
    assert CHATTER in quiet.stderr
