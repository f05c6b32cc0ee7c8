"""Model files that are not what they claim, through the real CLI: exit 3, one line, nothing after.

Before issue 17: a head sidecar without ``weights_sha256`` was accepted with zeroed weights,
an unknown ``arch`` was an internal error (rc 70), RAFT ``.pth`` files went through
torch.load, and MediaPipe's start-up warnings followed the ``error:`` line.
"""
import json
import shutil
from pathlib import Path

import pytest

from clips import make_clip
from cli_helpers import assert_clean_error, run_cli

WEIGHTS = Path(__file__).resolve().parents[1] / "plugins" / "weights"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", frames=10, size=(320, 240))


def copy_head(tmp_path, name: str, edit) -> Path:
    stem = tmp_path / name
    shutil.copy(WEIGHTS / f"{name}.safetensors", stem.with_suffix(".safetensors"))
    sidecar = json.loads((WEIGHTS / f"{name}.json").read_text())
    edit(sidecar)
    stem.with_suffix(".json").write_text(json.dumps(sidecar))
    return stem


def run_with(tmp_path, clip, chain: str, toml: str):
    config = tmp_path / "c.toml"
    config.write_text(toml)
    return run_cli("run", "--chain", chain, str(clip), "--config", str(config), "-q", "--max-frames", "3")


def only_the_error_line(result) -> str:
    """rc 3 and stderr is exactly the one `error:` line (-q: no summary; no native chatter)."""
    line = assert_clean_error(result)
    assert result.returncode == 3, result.stderr.decode()
    assert result.stderr.decode().strip().splitlines() == [line], result.stderr.decode()
    return line


def test_head_sidecar_without_weights_hash_is_refused(tmp_path, clip):
    stem = copy_head(tmp_path, "penn_swing_detector", lambda s: s.pop("weights_sha256"))
    from safetensors.torch import load_file, save_file
    import torch

    tensors = load_file(str(stem.with_suffix(".safetensors")))
    save_file({k: torch.zeros_like(v) for k, v in tensors.items()}, str(stem.with_suffix(".safetensors")))
    result = run_with(tmp_path, clip, "tracker,pose,detector", f'[plugins.detector]\nweights = "{stem}"\n')
    line = only_the_error_line(result)  # the pose plugin ran its MediaPipe set-up before this
    assert "weights_sha256" in line and str(stem.name) in line


def test_unknown_head_arch_is_a_model_error_when_loaded(tmp_path):
    from vpd_stream.errors import ModelError
    from vpd_stream.models.head_io import load_heads

    def edit(sidecar):
        sidecar["config"]["arch"] = "transformer"

    with pytest.raises(ModelError, match="unknown arch 'transformer'"):  # before: ValueError (rc 70)
        load_heads(copy_head(tmp_path, "penn_recognizer", edit))


@pytest.mark.slow
def test_unknown_head_arch_is_a_model_error(tmp_path, clip):
    def edit(sidecar):
        sidecar["config"]["arch"] = "transformer"

    stem = copy_head(tmp_path, "penn_recognizer", edit)
    result = run_with(tmp_path, clip, "tracker,pose,detector,recognizer", f'[plugins.recognizer]\nweights = "{stem}"\n')
    line = only_the_error_line(result)
    assert "unknown arch 'transformer'" in line


def test_raft_pth_is_refused_with_the_conversion_command(tmp_path, clip):
    torch = pytest.importorskip("torch")
    from vpd_stream.models.raft import build_raft

    pth = tmp_path / "raft_small.pth"
    torch.save(build_raft("small").state_dict(), pth)
    toml = f'[plugins.flow]\nmethod = "raft"\nraft_weights = "{pth}"\n'
    result = run_with(tmp_path, clip, "tracker,crop,flow", toml)
    line = only_the_error_line(result)
    assert f"vpd-stream convert-raft {pth}" in line


@pytest.mark.slow
def test_converted_raft_weights_run_in_the_chain(tmp_path, clip):
    torch = pytest.importorskip("torch")
    from vpd_stream.models.raft import build_raft

    pth = tmp_path / "raft_small.pth"
    torch.save(build_raft("small").state_dict(), pth)
    done = run_cli("convert-raft", str(pth))
    assert done.returncode == 0, done.stderr.decode()
    converted = tmp_path / "raft_small.safetensors"
    result = run_with(tmp_path, clip, "tracker,crop,flow",
                      f'[plugins.flow]\nmethod = "raft"\nraft_weights = "{converted}"\nraft_iterations = 1\n')
    assert result.returncode == 0, result.stderr.decode()
