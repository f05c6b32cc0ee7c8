"""Lazy frame pixels, bounded in flight: the same pixels as before, converted once, freed when done."""
from __future__ import annotations

import dataclasses
import threading

import av
import numpy as np
import pytest

from plugins.crop import CropPlugin, crop_square
from vpd_stream.annotations import Track
from vpd_stream.frame import EndOfStream, Frame, FramePixels
from vpd_stream.memory import MMAP_THRESHOLD, release_frame_buffers
from vpd_stream.plugin import Plugin
from vpd_stream.queues import LANE_BYTES, FrameQueue
from vpd_stream.sources import VideoSource
from vpd_stream.testing import make_clip


def _decoded_rgb(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_source_frames_are_lazy_and_hold_the_same_pixels(tmp_path) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=12, size=(160, 120), fps=25)
    reference = _decoded_rgb(clip)
    frames = list(VideoSource(str(clip), "c", target_fps=25.0).frames(threading.Event()))
    assert len(frames) == len(reference)
    assert all(not f.pixels_converted for f in frames)  # nothing converted until read
    assert (frames[3].width, frames[3].height) == (160, 120) and not frames[3].pixels_converted
    decoded = frames[3].pixel_nbytes
    assert 160 * 120 * 1.5 <= decoded < 160 * 120 * 3  # YUV 4:2:0, half of RGB (plus FFmpeg's padding)
    for i, f in enumerate(frames):
        assert np.array_equal(f.rgb, reference[i]) and f.rgb.flags["C_CONTIGUOUS"]
        assert f.rgb is f.rgb  # converted once, then the same array
        if i:
            assert f.prev_rgb is frames[i - 1].rgb  # the previous frame's conversion, shared
    assert frames[3].pixel_nbytes == 160 * 120 * 3
    assert frames[0].prev_rgb is None


def test_a_60fps_source_converts_the_skipped_previous_frame_only_for_its_crop(tmp_path) -> None:
    clip = make_clip(tmp_path / "c60.mp4", frames=20, size=(160, 120), fps=60)
    reference = _decoded_rgb(clip)
    frames = list(VideoSource(str(clip), "c", target_fps=25.0).frames(threading.Event()))
    f = frames[4]
    assert f.prev_step == 2 and f.source_index >= 2
    assert np.array_equal(f.prev_rgb, reference[f.source_index - 2])
    box = np.array([40, 30, 100, 100], np.float32)
    f.annotations["tracks"] = {1: Track(1, box, 0.9, True)}
    assert not f.pixels_converted and f.has_previous
    CropPlugin().process([f])
    crop = f.annotations["crop"][1]
    assert crop.prev_rgb.shape == (128, 128, 3) and not np.array_equal(crop.prev_rgb, crop.rgb)
    square = crop.box  # the crops of regions converted alone = crops of the whole frames converted
    assert np.array_equal(crop.prev_rgb, crop_square(reference[f.source_index - 2], square))
    assert np.array_equal(crop.rgb, crop_square(reference[f.source_index], square))
    assert f.prev_rgb is None and f.prev_picture is None  # released once the crops are taken
    assert f.rgb is not None  # the frame's own pixels stay (the annotated video draws on them)


@pytest.mark.parametrize("clip", ["sprint_start_sports2d.mp4", "tennis_broadcast_rally.mp4", "lunge_cam01.mp4"])
def test_regions_converted_alone_equal_the_whole_frame_converted(data_dir, clip: str) -> None:
    """libswscale on a region (even start, 4:2:0 lined up) = the region of the whole frame, bit
    for bit, on real clips (BT.709 and unspecified colour spaces), edges and odd corners included."""
    path = data_dir / "videos" / clip
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    rng = np.random.default_rng(0)
    for i, frame in enumerate(VideoSource(str(path), "s", target_fps=25.0).frames(threading.Event())):
        if i == 3:
            break
        h, w = frame.height, frame.width
        boxes = [(0, 0, w, h), (w - 3, h - 3, w, h), (1, 1, 2, 2), (0, h - 5, 7, h)]
        for _ in range(30):
            x1, y1 = int(rng.integers(0, w - 1)), int(rng.integers(0, h - 1))
            boxes.append((x1, y1, int(min(w, x1 + rng.integers(1, 400))), int(min(h, y1 + rng.integers(1, 400)))))
        regions = [frame.rgb_region(*b) for b in boxes]
        assert not frame.pixels_converted
        for (x1, y1, x2, y2), region in zip(boxes, regions):
            assert np.array_equal(region, frame.rgb[y1:y2, x1:x2]), (clip, x1, y1, x2, y2)


def test_array_frames_work_as_before() -> None:
    a, b = np.zeros((4, 6, 3), np.uint8), np.ones((4, 6, 3), np.uint8)
    f = Frame("s", 1, 0.04, b, prev_rgb=a)
    assert f.rgb is b and f.prev_rgb is a and (f.width, f.height) == (6, 4) and f.pixel_nbytes == b.nbytes
    g = dataclasses.replace(f, annotations={})
    assert g.rgb is b and g.prev_rgb is a
    f.rgb = a  # assignable, as the perception benchmark does
    assert f.rgb is a
    f.release_pixels()
    assert f.rgb is None and f.prev_rgb is None and f.pixel_nbytes == 0


def test_frames_holding_pixels_are_counted(tmp_path) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=6, size=(64, 48), fps=25)
    before = FramePixels.live
    frames = list(VideoSource(str(clip), "c", target_fps=25.0).frames(threading.Event()))
    assert FramePixels.live == before + len(frames)
    frames[0].release_pixels()
    assert FramePixels.live == before + len(frames) - 1
    del frames
    import gc

    gc.collect()
    assert FramePixels.live == before


class _Sized:
    def __init__(self, nbytes: int) -> None:
        self.pixel_nbytes = nbytes
        self.annotations: dict = {}


def test_a_lane_is_full_at_its_byte_budget_and_always_takes_one() -> None:
    q2 = FrameQueue(32, max_bytes=100)
    q2.put(_Sized(60), lane="a")
    q2.put(_Sized(30), lane="a")
    stop = threading.Event()
    done = threading.Event()

    def producer() -> None:
        q2.put(_Sized(30), lane="a", stop=stop)  # 120 > 100: waits for room
        done.set()

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    assert not done.wait(0.3)  # blocked by the bytes, not the count (2 of 32)
    assert len(q2.get_batch(1, 0.0)) == 1  # the 60-byte one leaves: 30 + 30 fits
    assert done.wait(2.0)
    assert q2.queued_bytes("a") == 60 and q2.queued_bytes("b") == 0
    big = FrameQueue(32, max_bytes=100)
    big.put(_Sized(500), lane="x")  # one frame bigger than the budget still goes in
    assert len(big) == 1 and big.queued_bytes() == 500
    stop.set()


def test_a_live_lane_over_its_bytes_drops_the_oldest() -> None:
    q = FrameQueue(32, max_bytes=100)
    first, second = _Sized(50), _Sized(50)
    q.put(first, lane="live", drop_oldest=True)
    q.put(second, lane="live", drop_oldest=True)
    dropped = q.put(_Sized(50), lane="live", drop_oldest=True)
    assert dropped is first and len(q) == 2 and q.queued_bytes("live") == 100
    q.put(EndOfStream("live"), lane="live", drop_oldest=True)  # markers are never refused
    items = q.get_batch(10, 0.0)
    assert isinstance(items[-1], EndOfStream) and q.queued_bytes() == 0


def test_default_budget_queues_five_decoded_1080p_frames() -> None:
    yuv_1080p = 1920 * 1080 * 3 // 2
    q = FrameQueue(32)
    assert q.max_bytes == LANE_BYTES
    n = 0
    while not q._full("a", q._lane("a"), yuv_1080p):
        q.put(_Sized(yuv_1080p), lane="a")
        n += 1
    assert n == LANE_BYTES // yuv_1080p == 5


def test_frame_buffers_policy_is_glibc_mallopt() -> None:
    import ctypes

    applied = release_frame_buffers()
    assert release_frame_buffers() == applied  # once per process, idempotent
    assert MMAP_THRESHOLD == 1 << 20
    try:
        ctypes.CDLL(None).mallopt
    except AttributeError:
        assert applied is False
    else:
        import os

        assert applied is ("MALLOC_MMAP_THRESHOLD_" not in os.environ)


@pytest.mark.slow
def test_default_chain_jsonl_same_on_torch_and_onnxruntime_heads(tmp_path, data_dir) -> None:
    """The default chain on a real clip (lunge_cam01, 1080x1920 at 60 fps: skipped previous frames):
    the JSONL with the PyTorch reference heads (--engine torch, the path before issue 16) equals
    the default one with the heads on ONNX Runtime, within 1e-3 (activations, scores)."""
    import json
    import subprocess
    import sys

    clip = data_dir / "videos" / "lunge_cam01.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is not there (set VPD_DATA_DIR)")
    outs = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / f"{engine}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "vpd_stream.cli", "run", str(clip), "-o", str(out),
                               "--engine", engine], capture_output=True, text=True, timeout=900,
                              env={**__import__("os").environ, "VPD_CACHE_DIR": str(tmp_path / "cache")})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"detector: {engine} fp32" in proc.stderr
        outs[engine] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(outs["torch"]) == len(outs["onnxruntime"]) > 40
    assert any(r["type"] == "event" for r in outs["torch"])

    def close(a, b) -> bool:
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
        if isinstance(a, float) or isinstance(b, float):
            return abs(a - b) <= 1e-3
        return a == b

    for a, b in zip(outs["torch"], outs["onnxruntime"]):
        assert close(a, b), (a, b)


class _Reader(Plugin):
    name = "reader"
    provides = ("luma",)

    def process(self, batch):
        for f in batch:
            f.annotations["luma"] = float(f.rgb.mean())


class _After(Plugin):
    name = "after"
    requires = ("luma",)
    provides = ("held",)
    reads_pixels = False

    def process(self, batch):
        for f in batch:
            f.annotations["held"] = f.pixel_nbytes


class _Keep:
    def __init__(self, reads: bool) -> None:
        self.reads_pixels = reads
        self.frames: list[Frame] = []

    def write_frame(self, frame, plugins) -> None:
        self.frames.append(frame)

    def write_event(self, event) -> None: ...

    def end_stream(self, eos) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("sink_reads", [False, True])
def test_frames_let_go_of_pixels_after_the_last_stage_reading_them(tmp_path, sink_reads: bool) -> None:
    from vpd_stream.pipeline import Pipeline, pixel_release_stage

    clip = make_clip(tmp_path / "c.mp4", frames=10, size=(96, 64), fps=25)
    sink = _Keep(sink_reads)
    plugins = [_Reader(), _After()]
    assert pixel_release_stage(plugins, [sink]) == (None if sink_reads else 0)
    assert pixel_release_stage(plugins, [sink, object()]) is None  # an unknown sink keeps them
    summary = Pipeline([VideoSource(str(clip), "c", target_fps=25.0)], plugins, [sink], queue_size=4).run()
    assert summary.ok and len(sink.frames) == 10
    held = [f.annotations["held"] for f in sink.frames]
    if sink_reads:  # the annotated video: pixels kept to the end
        assert all(h == 96 * 64 * 3 for h in held) and all(f.rgb is not None for f in sink.frames)
    else:
        assert held == [0] * 10 and all(f.rgb is None for f in sink.frames)
        assert all((f.width, f.height) == (96, 64) for f in sink.frames)  # still known
    assert all(isinstance(f.annotations["luma"], float) for f in sink.frames)


@pytest.mark.parametrize("mb,expected", [(None, LANE_BYTES), (4, 4 << 20), (0, None)])
def test_queue_mb_sets_every_queue_byte_budget(tmp_path, mb, expected) -> None:
    from vpd_stream.config import config_from_dict
    from vpd_stream.runner import build_pipeline

    clip = make_clip(tmp_path / "c.mp4", frames=4, size=(64, 48), fps=25)
    table = {"chain": ["framerecord"]} | ({"queue_mb": mb} if mb is not None else {})
    pipeline = build_pipeline(config_from_dict({"pipeline": table}), [str(clip)], [_Keep(False)])
    assert pipeline.queue_bytes == expected
    assert pipeline.run().ok and all(q.max_bytes == expected for q in pipeline._queues)


def test_queue_mb_must_be_a_size() -> None:
    from vpd_stream.config import config_from_dict
    from vpd_stream.errors import ConfigError

    with pytest.raises(ConfigError, match="queue_mb"):
        config_from_dict({"pipeline": {"queue_mb": -1}})


def test_a_batch_holds_at_most_the_byte_budget_of_rgb_pixels(tmp_path) -> None:
    clip = make_clip(tmp_path / "b.mp4", frames=7, size=(160, 120), fps=25)
    frames = list(VideoSource(str(clip), "b", target_fps=25.0).frames(threading.Event()))
    rgb = 160 * 120 * 3
    assert frames[0].rgb_nbytes == rgb and not frames[0].pixels_converted  # counted before converting
    assert frames[1].rgb.nbytes == frames[1].rgb_nbytes == rgb
    q = FrameQueue(32, max_bytes=int(2.5 * rgb))
    for k, f in enumerate(frames[:5]):
        q.put(f, lane=f"b{k}")  # one frame a lane (a lane always takes one): the batch takes across lanes
    assert [len(q.get_batch(8, 0.0)) for _ in range(3)] == [2, 2, 1]  # the stage's 8 capped by the bytes
    tiny = FrameQueue(32, max_bytes=10)
    tiny.put(frames[5], lane="b")
    assert len(tiny.get_batch(8, 0.0)) == 1  # one frame always, however big
    for f in frames[5:]:
        f.release_pixels()
        assert f.rgb_nbytes == 0 and f.pixel_nbytes == 0
        tiny.put(f, lane="b")  # nothing held: the lane's budget does not count them either
    tiny.put(EndOfStream("b"), lane="b")
    assert len(tiny.get_batch(8, 0.0)) == 3  # frames without pixels cost nothing; the marker closes it
