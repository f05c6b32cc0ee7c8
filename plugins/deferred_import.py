"""Packages put in ``sys.modules`` with their ``__init__`` not yet run (memory, not speed).

Some libraries the stream needs import, at their own import, much that the stream never
uses: mediapipe's package brings matplotlib and the Tasks API, norfair brings filterpy's
Kalman filters and with them scipy.stats (plugins.mediapipe_import, plugins.norfair_import
say how much). ``defer(name)`` makes the module object without running its code: a
submodule asked for is imported alone (``from package import sub`` first asks for the
attribute), ``stand_ins`` answer for names the importer binds but may never use, and any
other name runs the module's own code, once, so later users in the same process see the
whole module. Where the module is imported already, nothing changes.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any

_lock = threading.RLock()  # finishing a module may import through another deferred one


def defer(name: str, stand_ins: dict[str, Any] | None = None) -> None:
    """Put module ``name`` in ``sys.modules`` without running it (no-op if imported already)."""
    with _lock:
        if name in sys.modules:
            return
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            importlib.import_module(name)  # nothing to defer: the usual import says what is wrong
            return
        module = importlib.util.module_from_spec(spec)
        answers = dict(stand_ins or {})

        def attribute(key: str) -> Any:  # PEP 562: only for names the module does not have yet
            if key in answers:
                return answers[key]
            if spec.submodule_search_locations is not None and importlib.util.find_spec(f"{name}.{key}") is not None:
                return importlib.import_module(f"{name}.{key}")
            finish(name)
            return getattr(module, key)

        module.__getattr__ = attribute  # type: ignore[method-assign]
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def finish(name: str) -> Any:
    """Run a deferred module's own code now (once); the module."""
    with _lock:
        module = sys.modules[name]
        if module.__dict__.pop("__getattr__", None) is not None:
            module.__spec__.loader.exec_module(module)  # type: ignore[union-attr]
        return module
