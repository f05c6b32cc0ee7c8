"""plugins.deferred_import: mediapipe's BlazePose graphs and norfair without what they do not need.

Each case runs in a fresh interpreter (the test process has imported everything already).
"""
from __future__ import annotations

import subprocess
import sys

MEDIAPIPE = """
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
version = mp.__version__  # anything else runs the package's own __init__
drawing = mp.solutions.drawing_utils.draw_landmarks
print(lean, version, hands.__name__, drawing.__name__, "mediapipe.tasks" in sys.modules)
"""

NORFAIR = """
import sys
import numpy as np
from plugins.norfair_import import norfair

nf = norfair()
tracker = nf.Tracker(distance_function="iou", distance_threshold=0.7, initialization_delay=0)
for _ in range(3):
    objects = tracker.update([nf.Detection(np.array([[10.0, 10.0], [50.0, 90.0]]))])
lean = "scipy.stats" in sys.modules
from norfair.filter import FilterPyKalmanFilterFactory
made = FilterPyKalmanFilterFactory().create_filter(np.zeros((2, 2)))  # the stand-in makes the real one
print(lean, len(objects), type(made).__module__, type(made).__name__, "scipy.stats" in sys.modules)
"""


def _last_line(script: str) -> str:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_graphs_run_without_the_rest_of_mediapipe_and_the_package_still_works():
    last = _last_line(MEDIAPIPE)
    assert last.startswith("[] "), last  # neither matplotlib nor the Tasks API came with the graphs
    assert last.endswith(" Hands draw_landmarks True"), last  # and the full package is there on demand


def test_norfair_tracks_without_scipy_stats_and_filterpy_still_works():
    assert _last_line(NORFAIR) == "False 1 filterpy.kalman.kalman_filter KalmanFilter True"
