"""The model pools of issue 16 (plugins.model_pool, plugins.person_detector.DetectorPool):
calls run side by side on separate instances, results come back in the order asked, the
sliced detector gives what one instance gives, failures reach the caller, close is clean.
Correctness only: no timing asserts (a barrier's timeout only keeps a broken pool from
hanging the test)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from plugins.model_pool import ModelPool, auto_workers
from plugins.person_detector import DetectorPool, PersonDetection, SlicedDetector, tile_grid


class _Model:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self.busy = threading.Lock()  # one caller at a time per instance, as a mediapipe graph needs

    def close(self) -> None:
        self.closed = True


def test_auto_workers_is_one_per_core_at_most_four():
    assert auto_workers(3) == 3
    assert 1 <= auto_workers(0) <= 4


def test_one_instance_runs_in_the_callers_thread():
    model = _Model("only")
    pool = ModelPool([model])
    caller = threading.current_thread().name
    assert pool.map(lambda m, x: (m.name, threading.current_thread().name, x * 2), [1, 2]) == [
        ("only", caller, 2), ("only", caller, 4)]
    pool.close()
    assert model.closed


def test_two_instances_serve_calls_side_by_side_in_order():
    models = [_Model("a"), _Model("b")]
    pool = ModelPool(models, "t")
    both = threading.Barrier(2, timeout=30)  # passes only when two calls run at the same time

    def call(model: _Model, x: int):
        assert model.busy.acquire(blocking=False), "an instance served two calls at once"
        try:
            if x < 2:
                both.wait()
            return x, model.name, threading.current_thread().name
        finally:
            model.busy.release()

    results = pool.map(call, range(8))
    assert [r[0] for r in results] == list(range(8))  # the order asked
    assert {r[1] for r in results[:2]} == {"a", "b"}  # the first two ran together, one per instance
    assert all(r[2].startswith("pool:t") for r in results)
    pool.close()
    assert all(m.closed for m in models)
    with pytest.raises(RuntimeError):
        pool.submit(call, 0)


def test_a_failing_call_is_raised_after_every_call_finished():
    pool = ModelPool([_Model("a"), _Model("b")])
    finished = []

    def call(model: _Model, x: int):
        if x == 1:
            raise ValueError("bad input 1")
        finished.append(x)
        return x

    with pytest.raises(ValueError, match="bad input 1"):
        pool.map(call, range(6))
    assert sorted(finished) == [0, 2, 3, 4, 5]
    pool.close()


class _BoxesByContent:
    """A stateless detector: boxes from the image's content (its brightest pixels), as a
    real one gives the same boxes for the same pixels whichever instance runs."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        self.calls += 1
        assert rgb.flags.c_contiguous
        ys, xs = np.nonzero(rgb[..., 0] > 200)
        if len(xs) == 0:
            return []
        return [PersonDetection(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32),
                                float(rgb[..., 1].mean() / 255.0))]

    def close(self) -> None:
        pass


def test_sliced_detection_through_a_pool_equals_one_instance():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 150, (720, 1280, 3), np.uint8)
    for x, y, w, h in ((100, 200, 60, 140), (700, 80, 40, 100), (1000, 500, 90, 200)):
        rgb[y:y + h, x:x + w, 0] = 255
    regions = [(0, 0, 1280, 720)] + tile_grid(1280, 720, 240, 0.25)
    one = SlicedDetector(_BoxesByContent()).detect_regions(rgb, regions)
    bases = [_BoxesByContent(), _BoxesByContent()]
    pooled = SlicedDetector(DetectorPool(bases))
    two = pooled.detect_regions(rgb, regions)
    assert len(one) == len(two) >= 3
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.box, b.box)
        assert (a.score, a.cut) == (b.score, b.cut)
    assert sum(b.calls for b in bases) == len(regions) == pooled.calls
    ahead = DetectorPool([_BoxesByContent(), _BoxesByContent()])
    whole = pooled.merge_whole(ahead.submit(rgb).result())  # a whole-frame detection run ahead of time
    reference = SlicedDetector(_BoxesByContent()).detect(rgb)
    assert [tuple(d.box) for d in whole] == [tuple(d.box) for d in reference]
    ahead.close()
    pooled.close()
