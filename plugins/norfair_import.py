"""norfair without filterpy's Kalman filters (and scipy.stats) until one is made.

norfair's filter module imports ``filterpy.kalman.KalmanFilter`` for its
``FilterPyKalmanFilterFactory``; filterpy's package imports all its filters and
``scipy.stats`` with them: 32 MB of the default chain's peak RSS on lunge_cam01 (680 ->
648 MB, two runs, AMD EPYC 2 cores) for a filter the tracker never makes (it uses norfair's
own ``OptimizedKalmanFilterFactory``). ``norfair()`` imports norfair with ``filterpy.kalman``
deferred (plugins.deferred_import): the name norfair binds is a stand-in that imports the
real class when a filter is made, and anything else asked of ``filterpy.kalman`` imports it.
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

from plugins.deferred_import import defer, finish


class KalmanFilterOnDemand:
    """Stands in for ``filterpy.kalman.KalmanFilter``: making one imports filterpy."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return finish("filterpy.kalman").KalmanFilter(*args, **kwargs)


@functools.cache  # called per detection pass: the import machinery once
def norfair() -> ModuleType:
    """The norfair package, filterpy's filters deferred."""
    defer("filterpy.kalman", {"KalmanFilter": KalmanFilterOnDemand})
    return importlib.import_module("norfair")
