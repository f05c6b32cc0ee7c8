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
