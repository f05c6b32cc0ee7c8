"""mediapipe's BlazePose graphs without the rest of the mediapipe package.

``import mediapipe`` runs the package's ``__init__``, which imports every solution and its
drawing utilities (matplotlib, PIL) and the Tasks API: about 39 MB resident (57 MB for
``mediapipe.python.solution_base`` imported the usual way, 18 MB this way; measured on top
of numpy, OpenCV, PyAV and ONNX Runtime) that the person detector and the pose teacher
never use, out of the default chain's 700 MB budget.

``pose_solution()`` imports only ``mediapipe.python.solutions.pose``: it registers the
option protos of the calculators the BlazePose graphs use and brings ``SolutionBase``. The
two packages on the way (``mediapipe``, ``mediapipe.python.solutions``) are made without
running their ``__init__``; each finishes its own import the first time it is asked for
something that is not a submodule, so ``import mediapipe as mp; mp.solutions.hands`` later
in the same process still works. Where mediapipe was imported already, nothing changes.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType

_PACKAGES = ("mediapipe", "mediapipe.python.solutions")  # parents first
_lock = threading.RLock()  # finishing a package may import through pose_solution's own import


def pose_solution() -> ModuleType:
    """``mediapipe.python.solutions.pose`` (its ``Pose``; ``SolutionBase`` beside it)."""
    with _lock:
        for name in _PACKAGES:
            if name not in sys.modules:
                _deferred_package(name)
        return importlib.import_module("mediapipe.python.solutions.pose")


def _deferred_package(name: str) -> None:
    """Put package ``name`` in ``sys.modules`` with its ``__init__`` not yet run."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        importlib.import_module(name)  # not a package as expected: import it the usual way
        return
    module = importlib.util.module_from_spec(spec)

    def finish(attribute: str):
        # A submodule (``from package import sub`` asks hasattr first): import just that.
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            return importlib.import_module(f"{name}.{attribute}")
        with _lock:
            if module.__dict__.pop("__getattr__", None) is not None:
                spec.loader.exec_module(module)  # type: ignore[union-attr]  # the package's own __init__
        return getattr(module, attribute)

    module.__getattr__ = finish  # type: ignore[method-assign]  # PEP 562: only for names not yet set
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
