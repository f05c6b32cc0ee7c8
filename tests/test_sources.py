"""Decoding real videos and generated clips through VideoSource."""
import threading

import numpy as np
import pytest

from clips import make_clip
from vpd_stream.config import SourceConfig
from vpd_stream.sources import VideoSource, source_kind, stream_names


def decode(spec, fps=25.0, **kwargs):
    source = VideoSource(str(spec), "s", SourceConfig(), fps, **kwargs)
    source.check()
    return source, list(source.frames(threading.Event()))


@pytest.mark.parametrize("name,expected_w,expected_h,min_frames", [
    ("lunge_cam01.mp4", 1080, 1920, 40),      # H.264, 60 fps → 25 fps
    ("walkers_sports2d.mp4", 1768, 994, 90),  # VP9
    ("pedestrians_vtest.avi", 768, 576, 1900),  # 10 fps → 25 fps
])
def test_real_videos(videos_dir, name, expected_w, expected_h, min_frames):
    source, frames = decode(videos_dir / name)
    assert len(frames) >= min_frames
    f = frames[0]
    assert f.rgb.shape == (expected_h, expected_w, 3) and f.rgb.dtype == np.uint8
    assert np.allclose(np.diff([fr.pts for fr in frames]), 0.04, atol=1e-6)
    assert [fr.index for fr in frames] == list(range(len(frames)))


def test_lunge_60fps_prev_frame_is_source_rate(videos_dir):
    source, frames = decode(videos_dir / "lunge_cam01.mp4")
    assert source.status.fps == pytest.approx(60, rel=0.01)
    assert frames[5].prev_step == 2  # round(60 / 25)
    assert frames[5].prev_rgb is not None and frames[5].prev_rgb.shape == frames[5].rgb.shape
    # 100 source frames at 60 fps = 1.667 s → 42 frames at 25 fps
    assert len(frames) == 42


@pytest.mark.parametrize("codec,ext,fmt", [
    ("libx264", "mp4", None), ("libx265", "mkv", None), ("libvpx-vp9", "webm", None),
    ("mpeg4", "avi", None), ("libx264", "ts", "mpegts"),
])
def test_generated_codecs_and_containers(tmp_path, codec, ext, fmt):
    path = make_clip(tmp_path / f"clip.{ext}", codec=codec, fps=25, frames=30, container_format=fmt)
    source, frames = decode(path)
    assert len(frames) == 30
    assert frames[0].rgb.shape == (120, 160, 3)
    # The moving square makes consecutive frames differ: they were really decoded.
    assert not np.array_equal(frames[0].rgb, frames[10].rgb)


@pytest.mark.parametrize("fps,count", [(60, 120), (10, 20)])
def test_60_and_10_fps_clips_yield_25_fps(tmp_path, fps, count):
    path = make_clip(tmp_path / f"c{fps}.mp4", fps=fps, frames=count)
    _, frames = decode(path)
    pts = np.array([f.pts for f in frames])
    assert np.allclose(np.diff(pts), 0.04, atol=1e-6)
    assert abs(len(frames) - 2.0 * 25) <= 1


def test_variable_frame_rate_clip(tmp_path):
    times = np.cumsum(np.r_[0, np.tile([0.02, 0.06, 0.04], 20)])[:60]
    path = make_clip(tmp_path / "vfr.mkv", frames=60, vfr_times=times.tolist())
    _, frames = decode(path)
    assert np.allclose(np.diff([f.pts for f in frames]), 0.04, atol=1e-6)
    assert abs(frames[-1].pts - times[-1]) < 0.05


def test_keep_source_rate(tmp_path):
    path = make_clip(tmp_path / "c.mp4", fps=30, frames=30)
    _, frames = decode(path, fps=None)
    assert len(frames) == 30
    assert np.allclose(np.diff([f.pts for f in frames]), 1 / 30, atol=1e-3)


def test_max_frames(tmp_path):
    path = make_clip(tmp_path / "c.mp4", frames=30)
    _, frames = decode(path, max_frames=7)
    assert len(frames) == 7


def test_kinds_and_names():
    assert source_kind("a.mp4") == "file"
    assert source_kind("-") == "stdin"
    assert source_kind("rtsp://cam/1") == "live" and source_kind("tcp://127.0.0.1:5000") == "live"
    assert source_kind("rtsp://cam/1", live="no") == "file"
    assert stream_names(["a/x.mp4", "b/x.mp4", "-", "rtsp://cam:554/1"]) == ["x", "x-2", "stdin", "rtsp-cam-554"]


def test_passwords_are_not_shown():
    from vpd_stream.sources import redact_url

    assert redact_url("rtsp://cam:s3cret@10.0.0.2:554/live") == "rtsp://cam:***@10.0.0.2:554/live"
    assert redact_url("rtsp://cam@10.0.0.2/live") == "rtsp://cam@10.0.0.2/live"
    assert redact_url("clips/a:b@c.mp4") == "clips/a:b@c.mp4"
    assert stream_names(["rtsp://cam:s3cret@10.0.0.2:554/live"]) == ["rtsp-10.0.0.2-554"]


def test_stop_while_waiting_to_reconnect_ends_without_an_error():
    """A feed that is down; stop is set during the backoff: the generator ends, no InputError."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    config = SourceConfig(reconnect_attempts=10, backoff_initial=30, backoff_max=30, open_timeout=2)
    source = VideoSource(f"tcp://127.0.0.1:{port}", "s", config, 25.0)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert list(source.frames(stop)) == []  # before: InputError "feed unreachable after 1 attempts"
    assert source.status.reconnect_attempts == 1 and source.status.reconnects == 0
