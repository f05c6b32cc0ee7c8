"""Resampling by presentation time."""
import numpy as np
import pytest

from vpd_stream.resample import RateResampler


def resample(times, fps):
    r = RateResampler(fps)
    out = []
    for i, t in enumerate(times):
        out += r.push(t, i)
    out += r.flush()
    return out


@pytest.mark.parametrize("source_fps", [60.0, 10.0, 30.0, 25.0, 29.97])
def test_constant_rate_sources_come_out_at_25_fps(source_fps):
    duration = 4.0
    times = [i / source_fps for i in range(int(duration * source_fps))]
    out = resample(times, 25.0)
    pts = np.array([o.pts for o in out])
    assert np.allclose(np.diff(pts), 0.04)
    assert [o.index for o in out] == list(range(len(out)))
    assert abs(len(out) - duration * 25) <= 1
    # Each output carries the source frame nearest to its time.
    for o in out:
        assert abs(times[o.item] - o.pts) <= 0.5 / source_fps + 1e-9


def test_variable_frame_rate_uses_timestamps_not_counts():
    rng = np.random.default_rng(0)
    gaps = rng.uniform(0.01, 0.09, size=200)
    times = np.concatenate([[0.0], np.cumsum(gaps)]).tolist()
    out = resample(times, 25.0)
    assert np.allclose(np.diff([o.pts for o in out]), 0.04)
    for o in out:
        nearest = int(np.argmin(np.abs(np.array(times) - o.pts)))
        assert abs(times[o.item] - o.pts) <= abs(times[nearest] - o.pts) + 1e-9
    assert abs(out[-1].pts - times[-1]) < 0.05


def test_none_keeps_source_rate():
    times = [0.0, 0.1, 0.25, 0.3]
    out = resample(times, None)
    assert [o.pts for o in out] == times and [o.item for o in out] == [0, 1, 2, 3]


def test_starts_at_first_timestamp():
    out = resample([5.0 + i / 50 for i in range(50)], 25.0)
    assert out[0].pts == 5.0 and out[0].item == 0
