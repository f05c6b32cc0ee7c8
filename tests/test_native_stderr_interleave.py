"""The native-stderr filter when threads interleave on fd 2 (issue 17: TF Lite's pieces around
the CLI's error line), and after the CLI's last line (teardown chatter stays filtered)."""
import subprocess
import sys

from vpd_stream.native_stderr import drop_noise, merge


def test_a_piece_held_while_another_writer_finishes_its_line():
    forward, hold = merge(b"INFO: ", b"error: the model is missing\n")
    assert forward == b"error: the model is missing\n" and hold == b"INFO: "
    assert merge(hold, b"Created TensorFlow Lite XNNPACK delegate for CPU.\n") == (b"", b"")


def test_both_pieces_in_one_read():
    chunk = b"INFO: error: the model is missing\nCreated TensorFlow Lite XNNPACK delegate for CPU.\n"
    assert drop_noise(chunk) == b"error: the model is missing\n"
    assert drop_noise(b"INFO: a tool's own info line\n") == b"INFO: a tool's own info line\n"


def test_chatter_after_the_last_line_is_still_filtered():
    script = (
        "import os, sys\n"
        "from vpd_stream.native_stderr import NativeStderrFilter\n"
        "f = NativeStderrFilter(); f.start()\n"
        "print('error: one line', file=sys.stderr)\n"
        "f.stop(keep_filtering=True)\n"
        "os.write(2, b'W0000 00:00:1796162187.006445   26194 inference_feedback_manager.cc:114] Feedback\\n')\n"
        "os.write(2, b'late but real\\n')\n"
        "import time; time.sleep(0.3)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == b"error: one line\nlate but real\n"
