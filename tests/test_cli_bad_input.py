"""Bad input ends in one clear line, a non-zero exit, no traceback, no partial JSONL line."""
from pathlib import Path

import av
import pytest

from clips import _encode, make_clip
from cli_helpers import assert_clean_error, jsonl_records, run_cli


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("c") / "c.mp4", frames=100).read_bytes()


def test_missing_file(tmp_path):
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(tmp_path / "nope.mp4")), "nope.mp4", "no such file")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(path)), "empty.mp4", "empty")


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes, not a video\n" * 20)
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(path)), "notes.mp4", "not a video")


def test_truncated_mp4_without_index(tmp_path, clip_bytes):
    path = tmp_path / "cut.mp4"
    mdat = clip_bytes.find(b"mdat")
    path.write_bytes(clip_bytes[: mdat + (len(clip_bytes) - mdat) // 2])  # cut mid-mdat; moov is at the end
    out = tmp_path / "out.jsonl"
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(path), "-o", str(out)), "cut.mp4", "moov")
    assert not out.exists()  # failed before anything was written


def test_truncated_faststart_mp4_keeps_what_was_decoded(tmp_path):
    full = tmp_path / "fs.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        _encode(container, "libx264", 25, 100, 160, 120, 10, None)
    data = full.read_bytes()
    mdat = data.find(b"mdat")
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: mdat + (len(data) - mdat) // 2])
    out = tmp_path / "out.jsonl"
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(path), "-o", str(out)), "cut.mp4", "truncated")
    records = jsonl_records(out)
    frames = [r for r in records if r["type"] == "frame"]
    assert 20 < len(frames) < 100  # the frames before the cut were processed and kept


def test_unsupported_codec(tmp_path):
    avi = make_clip(tmp_path / "x.avi", codec="mpeg4", frames=10).read_bytes()
    assert b"FMP4" in avi
    path = tmp_path / "odd.avi"
    path.write_bytes(avi.replace(b"FMP4", b"QQQQ"))  # a FourCC no decoder knows
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(path)), "odd.avi", "unsupported")


def test_unreachable_url(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[source]\nreconnect_attempts = 1\nbackoff_initial = 0.05\nopen_timeout = 2\n")
    # Port 9 on loopback: nothing listens (discard service is not running).
    result = run_cli("run", "--chain", "framerecord", "tcp://127.0.0.1:9", "--config", str(config), timeout=60)
    assert_clean_error(result, "tcp://127.0.0.1:9", "unreachable")


def test_bad_toml(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[pipeline]\nchain = [framerecord\n")
    assert_clean_error(run_cli("run", "--chain", "framerecord", "x.mp4", "--config", str(config)), "bad.toml", "TOML")


def test_wrong_key_in_config(tmp_path, clip_bytes):
    config = tmp_path / "c.toml"
    config.write_text("[pipeline]\nfps = 25\ncahin = ['framerecord']\n")
    err = assert_clean_error(run_cli("run", "--chain", "framerecord", "x.mp4", "--config", str(config)), "c.toml:3", "cahin")
    assert err.startswith("error:")


def test_unknown_plugin(tmp_path, clip_bytes):
    path = tmp_path / "c.mp4"
    path.write_bytes(clip_bytes)
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(path), "--chain", "framerecord,teleport"), "teleport", "unknown plugin")


def test_chain_missing_requirement(tmp_path, clip_bytes):
    path = tmp_path / "c.mp4"
    path.write_bytes(clip_bytes)
    assert_clean_error(run_cli("run", "--chain", "framerecord", str(path), "--chain", "crop"), "crop", "requires")


def test_one_bad_file_among_good_ones(tmp_path, clip_bytes):
    good = tmp_path / "good.mp4"
    good.write_bytes(clip_bytes)
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    result = run_cli("run", "--chain", "framerecord", str(good), str(bad))
    assert_clean_error(result, "bad.mp4")


def test_named_pipe_with_a_writer_is_read(tmp_path):
    """A FIFO has size 0: it was refused as 'empty (0 bytes)' before issue 17."""
    import os
    import threading

    clip = make_clip(tmp_path / "c.ts", frames=40, container_format="mpegts").read_bytes()
    fifo = tmp_path / "feed.ts"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as f:  # blocks until the CLI opens the pipe to read
            f.write(clip)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(fifo), "-o", str(out), timeout=60)
    writer.join(5)
    assert result.returncode == 0, result.stderr.decode()
    assert sum(r["type"] == "frame" for r in jsonl_records(out)) == 40


def rotated_mp4(tmp_path, degrees_metadata: int) -> Path:
    """An MP4 whose track header says 'display rotated' (what `-metadata:s:v rotate=90` or a
    phone writes): the tkhd matrix patched in place, since PyAV cannot set it."""
    import struct

    path = make_clip(tmp_path / "r.mp4", frames=10, size=(160, 120))
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0: the matrix follows 40 bytes of fields
    offset = tkhd + 4 + 40
    one, width, height = 1 << 16, 160 << 16, 120 << 16
    matrices = {90: (0, one, 0, -one, 0, 0, height, 0, 1 << 30),
                270: (0, -one, 0, one, 0, 0, 0, width, 1 << 30),
                180: (-one, 0, 0, 0, -one, 0, width, height, 1 << 30)}
    data[offset: offset + 36] = struct.pack(">9i", *matrices[degrees_metadata])
    out = tmp_path / f"rot{degrees_metadata}.mp4"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("rotate,turns", [(90, -1), (270, 1), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path, rotate, turns):
    import threading

    import numpy as np

    from clips import pattern
    from vpd_stream.config import SourceConfig
    from vpd_stream.sources import VideoSource

    path = rotated_mp4(tmp_path, rotate)
    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    first = [r for r in jsonl_records(out) if r["type"] == "frame"][0]
    upright = (160, 120) if rotate == 180 else (120, 160)
    assert (first["width"], first["height"]) == upright
    source = VideoSource(str(path), "r", SourceConfig(), None)
    source.check()
    frame = next(iter(source.frames(threading.Event())))
    expected = np.rot90(pattern(0, 160, 120), turns)  # rotate=90 means: show it turned clockwise
    assert frame.rgb.shape == expected.shape and frame.rgb.flags["C_CONTIGUOUS"]
    assert np.abs(frame.rgb.astype(int) - expected).mean() < 12  # lossy H.264, the right way up
    wrong = np.rot90(pattern(0, 160, 120), -turns)
    if rotate != 180:
        assert np.abs(frame.rgb.astype(int) - wrong).mean() > 30
