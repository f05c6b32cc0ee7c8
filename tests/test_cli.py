"""The command line on good input: several sources, outputs, plugins listing, help."""
import av
import pytest

from clips import make_clip
from cli_helpers import jsonl_records, run_cli


def test_help_on_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    commands = [line.split()[0] for line in result.stdout.decode().split("Commands:")[1].splitlines() if line.strip()]
    assert {"run", "plugins", "demo"} <= set(commands)
    for command in commands:
        sub = run_cli(command, "--help")
        assert sub.returncode == 0 and b"Usage:" in sub.stdout, command


def test_plugins_lists_requires_and_provides():
    result = run_cli("plugins")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "framerecord:" in out and "provides: record" in out


def test_several_sources_share_the_pipeline(tmp_path):
    a = make_clip(tmp_path / "a.mp4", frames=30)
    b = make_clip(tmp_path / "b.mkv", codec="libvpx-vp9", frames=20, fps=50)
    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(a), str(b), "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    records = jsonl_records(out)
    per_stream = {}
    for r in records:
        if r["type"] == "frame":
            per_stream.setdefault(r["stream"], []).append(r["frame"])
    assert per_stream["a"] == list(range(30))
    assert per_stream["b"] == list(range(10))  # 20 frames at 50 fps = 0.4 s → 10 at 25 fps
    assert {r["stream"] for r in records if r["type"] == "end"} == {"a", "b"}
    err = result.stderr.decode()
    assert "a: 30/30 frames" in err and "b: 10/10 frames" in err


def test_annotated_video_is_written_and_decodes(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", frames=25, size=(320, 240))
    video = tmp_path / "annotated.mp4"
    result = run_cli("run", "--chain", "framerecord", str(clip), "--annotate", str(video), "-q")
    assert result.returncode == 0, result.stderr.decode()
    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 25 and frames[0].width == 320


def test_fps_none_and_max_frames(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", frames=60, fps=60)
    out = tmp_path / "o.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(clip), "--fps", "none", "--max-frames", "45", "-o", str(out))
    assert result.returncode == 0
    assert sum(r["type"] == "frame" for r in jsonl_records(out)) == 45


@pytest.mark.parametrize("value", ["0", "-3", "fast"])
def test_bad_fps_is_a_clear_error(tmp_path, value):
    clip = make_clip(tmp_path / "a.mp4", frames=5)
    result = run_cli("run", "--chain", "framerecord", str(clip), "--fps", value)
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert result.stderr.decode().startswith("error:")
