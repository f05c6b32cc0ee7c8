"""vpd_stream.testing, the plugin author's kit: real clips, in-memory frames, run_chain.

Checked against the real components: the decoder (VideoSource), the CLI's JSONL output,
and the built-in framerecord, tracker and crop plugins.
"""
import dataclasses
import threading

import numpy as np
import pytest

from cli_helpers import jsonl_records, run_cli
from vpd_stream.annotations import Key, Track
from vpd_stream.errors import ConfigError, ModelError, PluginError
from vpd_stream.frame import Event, Frame
from vpd_stream.plugin import Plugin
from vpd_stream.sources import VideoSource
from vpd_stream.testing import (ChainFailed, InMemorySource, figure_box, figure_track, frames_from_arrays, given,
                                load_plugins, make_clip, make_frames, records, run_chain, synthetic_image)


def decode(path, fps=None):
    source = VideoSource(str(path), path.stem, target_fps=fps)
    return list(source.frames(threading.Event())), source.status


def test_make_clip_writes_a_real_video_of_the_scene(tmp_path):
    path = make_clip(tmp_path / "walk.mp4", frames=20, size=(320, 240), fps=25)
    frames, status = decode(path)
    assert len(frames) == 20 and status.fps == pytest.approx(25.0) and status.codec == "h264"
    assert [f.pts for f in frames] == pytest.approx([i / 25 for i in range(20)], abs=1e-6)
    assert frames[0].rgb.shape == (240, 320, 3)
    for i in (0, 10, 19):  # what was decoded is what was drawn, up to the codec's loss
        diff = np.abs(frames[i].rgb.astype(int) - synthetic_image(i, 20, (320, 240)).astype(int))
        assert diff.mean() < 4.0, (i, diff.mean())
    # the figure walks: its box moves right and the pixels there change
    assert figure_box(19, 20, (320, 240))[0] > figure_box(0, 20, (320, 240))[2]
    assert np.abs(frames[0].rgb.astype(int) - frames[19].rgb.astype(int)).mean() > 5.0

    avi = make_clip(tmp_path / "walk.avi", frames=5, size=(160, 120), codec="mpeg4")
    frames, status = decode(avi)
    assert len(frames) == 5 and status.codec == "mpeg4"
    with pytest.raises(ValueError, match="even"):
        make_clip(tmp_path / "odd.mp4", size=(161, 120))


def test_frames_from_arrays_are_stamped_and_linked_like_a_source():
    arrays = [synthetic_image(i, 4, (64, 48)) for i in range(4)]
    frames = frames_from_arrays(arrays, fps=10.0, stream_id="cam", start_pts=2.0)
    assert [(f.stream_id, f.index, f.source_index) for f in frames] == [("cam", i, i) for i in range(4)]
    assert [f.pts for f in frames] == pytest.approx([2.0, 2.1, 2.2, 2.3])
    assert frames[0].prev_rgb is None and all(f.prev_rgb is a for f, a in zip(frames[1:], arrays))
    assert frames[0].target_fps == 10.0 and frames[0].source_fps == 10.0
    assert len(make_frames(3, (64, 48))) == 3
    with pytest.raises(ValueError, match="uint8 RGB"):
        frames_from_arrays([np.zeros((4, 4), np.uint8)])


def test_records_are_what_the_cli_writes_for_the_same_clip(tmp_path):
    """run_chain over a file (runner API), over the decoded arrays (in-memory source),
    and `vpd-stream run` all write the same JSONL records."""
    path = make_clip(tmp_path / "clip.mp4", frames=12, size=(160, 120))
    out = tmp_path / "out.jsonl"
    result = run_cli("run", str(path), "--chain", "framerecord", "--fps", "none", "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr.decode()
    cli_records = jsonl_records(out)

    from_file = run_chain("framerecord", path, fps=None)
    decoded, _ = decode(path)
    from_arrays = run_chain(["framerecord"], frames_from_arrays([f.rgb for f in decoded], stream_id="clip"))
    assert [r["type"] for r in cli_records] == ["frame"] * 12 + ["end"]
    assert from_file.records == cli_records
    assert from_arrays.records == cli_records
    brightness = [r["brightness"] for r in cli_records[:-1]]
    assert brightness == pytest.approx([f.rgb[::4, ::4].mean() for f in decoded], abs=0.01)
    assert records(from_arrays, events=False) == cli_records[:-1]
    assert records(list(from_arrays), from_arrays.plugins) == cli_records[:-1]


def test_tracker_and_crop_follow_the_generated_figure():
    n, size = 24, (640, 360)
    run = run_chain("tracker,crop", make_frames(n, size))
    assert len(run) == n
    followed = 0
    for frame in run:
        athletes = [t for t in frame.annotations[Key.TRACKS].values() if t.is_athlete]
        if not athletes:
            continue
        followed += 1
        truth = figure_box(frame.index, n, size)
        (x1, y1, x2, y2) = athletes[0].box
        assert abs((x1 + x2) / 2 - (truth[0] + truth[2]) / 2) < 0.1 * size[0], frame.index
        crop = frame.annotations[Key.CROP][athletes[0].track_id]
        assert crop.rgb.shape == (128, 128, 3)
        sx1, sy1, sx2, sy2 = crop.box  # the crop's square holds (nearly all of) the figure
        inside = (max(0.0, min(sx2, truth[2]) - max(sx1, truth[0])) * max(0.0, min(sy2, truth[3]) - max(sy1, truth[1])))
        assert inside >= 0.9 * (truth[2] - truth[0]) * (truth[3] - truth[1]), frame.index
    assert followed >= n - 4  # the tracker confirms a track from its second detection


def test_plugins_from_names_specs_classes_and_instances_with_checked_options():
    from plugins.crop import CropPlugin

    built = load_plugins(["crop", "plugins.crop:CropPlugin", CropPlugin, CropPlugin()],
                         options={"crop": {"size": 64}})
    assert all(isinstance(p, CropPlugin) for p in built)
    assert [p.options.size for p in built] == [64, 64, 64, 128]  # a table is found by name too
    with pytest.raises(ConfigError, match=r"\[plugins\.crop\] size must be an integer"):
        load_plugins("crop", options={"crop": {"size": "big"}})
    with pytest.raises(ConfigError, match=r"^\[plugins\.crop\] size must be"):
        load_plugins("crop", options={"crop": {"size": 2}})
    with pytest.raises(PluginError, match="not in the chain: tracker"):
        load_plugins("crop", options={"tracker": {}})
    with pytest.raises(PluginError, match="unknown plugin 'nope'"):
        load_plugins("nope")
    from vpd_stream.presets import load_preset

    assert [p.name for p in load_plugins("vpd")] == load_preset("vpd")["pipeline"]["chain"]  # as --chain vpd
    with pytest.raises(PluginError, match="requires tracks"):  # refused before any frame runs
        run_chain("crop", make_frames(2, (64, 48)))


class Recorder(Plugin):
    """Records its life cycle; emits one event per stream at its end."""

    name = "recorder"
    provides = ("seen", Key.EVENTS)
    batch_size = 3

    def __init__(self, options=None):
        super().__init__(options)
        self.calls = []

    def setup(self, context):
        super().setup(context)
        self.calls.append(("setup", context.target_fps))

    def process(self, batch):
        for frame in batch:
            self.calls.append(("frame", frame.stream_id, frame.index))
            frame.annotations["seen"] = frame.index

    def end_stream(self, eos):
        self.calls.append(("end", eos.stream_id))
        eos.events.append(Event(eos.stream_id, None, "done", 1.0, 0, eos.frames - 1, 0.0, 0.0))

    def close(self):
        self.calls.append(("close",))

    def describe(self, frame):
        return {"seen": frame.annotations["seen"]}


def test_streams_run_side_by_side_and_the_life_cycle_is_the_pipelines():
    a, b = make_frames(5, (64, 48), stream_id="a"), make_frames(7, (64, 48), stream_id="b", fps=None)
    recorder = Recorder()
    run = run_chain(recorder, a + b)
    calls = recorder.calls
    assert calls[0] == ("setup", 25.0) and calls[-1] == ("close",)
    for sid, n in (("a", 5), ("b", 7)):
        assert [c[2] for c in calls if c[0] == "frame" and c[1] == sid] == list(range(n))
        assert calls.index(("end", sid)) > max(i for i, c in enumerate(calls) if c[:2] == ("frame", sid))
        assert [f.index for f in run.stream(sid)] == list(range(n))
    assert sorted(e.stream_id for e in run.events) == ["a", "b"] and len(run.ends) == 2
    assert sum(r["type"] == "event" and r["label"] == "done" for r in run.records) == 2
    assert all(f.annotations == {} for f in a + b)  # the caller's frames are left as they were


class Boom(Plugin):
    name = "boom"
    provides = ("boom",)

    def process(self, batch):
        for frame in batch:
            if frame.index == 3:
                raise ZeroDivisionError("frame 3 divides by zero")
            frame.annotations["boom"] = 1


def test_a_plugin_that_crashes_raises_with_its_own_exception_as_the_cause():
    with pytest.raises(ChainFailed, match=r"\[plugins\.boom\] failed: ZeroDivisionError") as info:
        run_chain(Boom(), make_frames(8, (64, 48)))
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.__cause__.__traceback__ is not None  # the plugin's traceback survives
    run = run_chain(Boom(), make_frames(8, (64, 48)), raise_errors=False)
    assert run.summary.error and "boom" in run.summary.error
    assert [f.index for f in run] == [0, 1, 2][: len(run)]  # nothing after the failing frame


class NoModel(Plugin):
    name = "no_model"

    def setup(self, context):
        raise ModelError("model.onnx is missing; train it with `vpd-stream train`")

    def process(self, batch):
        raise AssertionError("process ran although setup failed")


def test_a_setup_error_is_raised_as_it_is_before_any_frame():
    with pytest.raises(ModelError, match=r"^\[plugins\.no_model\] model\.onnx is missing"):
        run_chain([Recorder(), NoModel()], make_frames(3, (64, 48)))


def test_given_supplies_inputs_without_their_plugins():
    from plugins.crop import CropPlugin

    n = 6
    boxes = [np.array([10, 10, 40, 60], np.float32) + 4 * i for i in range(n)]
    listed = given(tracks=[{7: Track(7, box, 1.0, is_athlete=True)} for box in boxes[:4]])
    run = run_chain([listed, CropPlugin()], make_frames(n, (160, 120)))
    assert [sorted(f.annotations.get("crop", {})) for f in run] == [[7]] * 4 + [[]] * 2
    assert [f.annotations.get("tracks") is None for f in run] == [False] * 4 + [True] * 2
    # a callable is called per frame; figure_track moves at exactly the figure's speed
    run = run_chain([given(tracks=figure_track(n, (160, 120)), label="x")], make_frames(n, (160, 120)))
    centres = [float(f.annotations["tracks"][1].box[[0, 2]].mean()) for f in run]
    assert np.diff(centres) == pytest.approx([0.6 * 160 / (n - 1)] * (n - 1), rel=1e-5)
    assert {f.annotations["label"] for f in run} == {"x"}


def test_in_memory_source_has_the_source_interface():
    frames = make_frames(3, (64, 48), stream_id="s")
    source = InMemorySource(frames)
    assert (source.stream_id, source.kind, source.is_live) == ("s", "file", False)
    out = list(source.frames(threading.Event()))
    assert [f.index for f in out] == [0, 1, 2] and out[0] is not frames[0] and out[0].rgb is frames[0].rgb
    assert source.status.decoded == 3 and not source.status.connected
    with pytest.raises(ValueError, match="several streams"):
        InMemorySource(frames + make_frames(1, (64, 48), stream_id="t"))
    assert isinstance(dataclasses.replace(frames[0]), Frame)
