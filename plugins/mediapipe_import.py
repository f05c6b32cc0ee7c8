"""mediapipe's BlazePose graphs without the rest of the mediapipe package.

``import mediapipe`` runs the package's ``__init__``, which imports every solution and its
drawing utilities (matplotlib, PIL) and the Tasks API: about 39 MB resident (57 MB for
``mediapipe.python.solution_base`` imported the usual way, 18 MB this way; measured on top
of numpy, OpenCV, PyAV and ONNX Runtime) that the person detector and the pose teacher
never use, out of the default chain's 700 MB budget.

``pose_solution()`` imports only ``mediapipe.python.solutions.pose``: it registers the
option protos of the calculators the BlazePose graphs use and brings ``SolutionBase``. The
two packages on the way (``mediapipe``, ``mediapipe.python.solutions``) are deferred
(plugins.deferred_import), so ``import mediapipe as mp; mp.solutions.hands`` later in the
same process still works. Where mediapipe was imported already, nothing changes.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from plugins.deferred_import import defer


def pose_solution() -> ModuleType:
    """``mediapipe.python.solutions.pose`` (its ``Pose``; ``SolutionBase`` beside it)."""
    defer("mediapipe")
    defer("mediapipe.python.solutions")
    return importlib.import_module("mediapipe.python.solutions.pose")
