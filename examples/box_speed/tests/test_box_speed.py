"""The box_speed plugin's own tests: no video file and no tracker needed.

``vpd_stream.testing`` makes the frames (a figure walking at a known speed), ``given``
supplies the tracks the tracker would, and ``run_chain`` runs the real pipeline.
Run with ``pytest examples/box_speed/tests`` (the package importable or installed).
"""
import dataclasses

import pytest

from box_speed_pkg import BoxSpeedPlugin
from vpd_stream.errors import ConfigError, PluginError
from vpd_stream.plugin import instantiate, validate_chain
from vpd_stream.testing import figure_track, given, make_frames, run_chain

N, SIZE, FPS = 30, (640, 360), 25.0
TRUE_SPEED = 0.6 * SIZE[0] / (N - 1) * FPS  # px/s: the figure walks 60 % of the width in N frames


def test_speed_of_a_box_moving_at_a_known_speed():
    run = run_chain([given(tracks=figure_track(N, SIZE)), BoxSpeedPlugin()], make_frames(N, SIZE, fps=FPS))
    speeds = [f.annotations["box_speed"][1].speed for f in run[1:]]
    assert "box_speed" not in run[0].annotations or not run[0].annotations["box_speed"]  # no speed yet
    assert speeds == pytest.approx([TRUE_SPEED] * (N - 1), rel=1e-3)
    frame_records = [r for r in run.records if r["type"] == "frame"]
    assert frame_records[5]["tracks"][0]["speed_px_s"] == pytest.approx(TRUE_SPEED, abs=0.1)
    assert frame_records[5]["tracks"][0]["velocity_px_s"] == pytest.approx([TRUE_SPEED, 0.0], abs=0.1)


def test_fast_runs_become_events_and_the_open_one_is_flushed_at_the_end():
    # The figure walks from frame 0 to N-1 and then stands still for 10 frames.
    track = figure_track(N, SIZE)
    still = lambda frame: track(dataclasses.replace(frame, index=min(frame.index, N - 1)))  # noqa: E731
    frames = make_frames(N + 10, SIZE, fps=FPS)
    run = run_chain([given(tracks=still), BoxSpeedPlugin(BoxSpeedPlugin.Options(alert_speed=100.0, smoothing=0.0))],
                    frames)
    (event,) = run.events
    assert (event.label, event.track_id, event.start_frame, event.end_frame) == ("fast", 1, 1, N - 1)
    assert event.emitted_frame == N  # closed on the first still frame, not at the end
    assert event.extra["peak_speed_px_s"] == pytest.approx(TRUE_SPEED, abs=0.1)

    moving = run_chain([given(tracks=figure_track(N, SIZE)),
                        BoxSpeedPlugin(BoxSpeedPlugin.Options(alert_speed=100.0))], make_frames(N, SIZE))
    (event,) = moving.events  # still open at the last frame: end_stream emits it
    assert event.end_frame == N - 1 and [r["type"] for r in moving.records[-2:]] == ["event", "end"]


def test_options_are_checked_with_one_clear_message():
    with pytest.raises(ConfigError, match=r"^\[plugins\.box_speed\] point must be 'centre' or 'feet'"):
        instantiate(BoxSpeedPlugin, BoxSpeedPlugin.Options(point="head"))
    with pytest.raises(ConfigError, match=r"smoothing must be in \[0, 1\)"):
        instantiate(BoxSpeedPlugin, BoxSpeedPlugin.Options(smoothing=1.0))


def test_needs_tracks_and_provides_events_only_when_alerting():
    with pytest.raises(PluginError, match="requires tracks"):
        validate_chain([BoxSpeedPlugin()])
    assert "events" not in BoxSpeedPlugin().provides
    assert "events" in BoxSpeedPlugin(BoxSpeedPlugin.Options(alert_speed=50.0)).provides
