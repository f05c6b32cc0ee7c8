"""plugins.mediapipe_import: the BlazePose graphs without mediapipe's package __init__."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import numpy as np
from plugins.pose import BlazePoseLandmarks
from plugins.person_detector import BlazePoseDetector

BlazePoseDetector().detect(np.zeros((224, 224, 3), np.uint8))
BlazePoseLandmarks().estimate(np.zeros((256, 256, 3), np.uint8))
lean = sorted(m for m in ("matplotlib", "PIL", "mediapipe.tasks", "mediapipe.python.solutions.drawing_utils")
              if m in sys.modules)
import mediapipe as mp
hands = mp.solutions.hands.Hands  # a submodule of the deferred package, imported on demand
version = mp.__version__  # anything else finishes the package's own import
drawing = mp.solutions.drawing_utils.draw_landmarks
print(lean, version, hands.__name__, drawing.__name__, "mediapipe.tasks" in sys.modules)
"""


def test_the_graphs_run_without_the_rest_of_mediapipe_and_the_package_still_works():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("[] "), last  # neither matplotlib nor the Tasks API came with the graphs
    assert last.endswith(" Hands draw_landmarks True"), last  # and the full package is there on demand
