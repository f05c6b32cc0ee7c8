"""A full disk through the real CLI: one `error:` line naming the file, exit 1, no torn line.

Two ways to fill a disk: a 16 KiB tmpfs (needs root and mount permission; skipped with the
reason otherwise: ENOSPC) and a file-size limit (RLIMIT_FSIZE, as `ulimit -f` sets it;
works for any user: EFBIG). Standard output on /dev/full covers `-o -`.
"""
import os
import resource
import subprocess
import uuid

import av
import pytest

from clips import make_clip
from cli_helpers import CLI, assert_clean_error, jsonl_records, run_cli

LIMIT = 16 * 1024  # for JSONL
VIDEO_LIMIT = 64 * 1024  # for the annotated video: a few 2-second fragments


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # 250 frames of framerecord JSONL are about 25 KiB: more than the limit.
    return make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", frames=250, size=(320, 240))


@pytest.fixture
def small_tmpfs(tmp_path, request):
    size = getattr(request, "param", LIMIT)
    mount = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE tests cover a full disk")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); RLIMIT_FSIZE tests cover it")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def limit_file_size(size=LIMIT):
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def limit_video_size():
    limit_file_size(VIDEO_LIMIT)


def check_whole_lines(out, result):
    err = assert_clean_error(result, str(out))
    assert result.returncode == 1  # an input/output error, not an internal one (70)
    records = jsonl_records(out)  # every line parses and the file ends with a newline
    assert len(records) > 50 and all(r["type"] == "frame" for r in records)
    assert f"{len(records)} whole records" in err
    return err


def test_jsonl_on_a_full_tmpfs(small_tmpfs, clip):
    out = small_tmpfs / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(clip), "-o", str(out))
    err = check_whole_lines(out, result)
    assert "no space left" in err


def test_jsonl_past_the_file_size_limit(tmp_path, clip):
    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(clip), "-o", str(out), preexec_fn=limit_file_size)
    err = check_whole_lines(out, result)
    assert "file size limit" in err


def annotated_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("small_tmpfs", [VIDEO_LIMIT], indirect=True)
def test_annotated_video_on_a_full_tmpfs_plays_up_to_the_failure(small_tmpfs, clip):
    video = small_tmpfs / "a.mp4"
    result = run_cli("run", "--chain", "framerecord", str(clip), "--annotate", str(video))
    err = assert_clean_error(result, str(video), "no space left")
    assert result.returncode == 1 and "last whole fragment" in err
    assert 0 < annotated_frames(video) < 250  # decodes without an error: no torn fragment


def test_annotated_video_past_the_file_size_limit(tmp_path, clip):
    video = tmp_path / "a.mp4"
    result = run_cli("run", "--chain", "framerecord", str(clip), "--annotate", str(video), preexec_fn=limit_video_size)
    assert_clean_error(result, str(video), "file size limit")
    assert 0 < annotated_frames(video) < 250


def test_stdout_on_dev_full(clip):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        result = subprocess.run([*CLI, "run", "--chain", "framerecord", str(clip), "-o", "-"], stdout=full,
                                stderr=subprocess.PIPE, timeout=120)
    assert_clean_error(result, "standard output", "no space left")
    assert result.returncode == 1
