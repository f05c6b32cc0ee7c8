"""The VPD chain as a named preset (issue 16): `--chain vpd` = tracker, crop, flow, student,
detector, recognizer with the heads on the student's embeddings and no pose teacher."""
from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import assert_clean_error, jsonl_records, run_cli
from vpd_stream.config import config_from_dict
from vpd_stream.models.head_io import load_heads, save_heads
from vpd_stream.presets import expand_chain, load_preset, preset_names
from vpd_stream.runner import build_plugins
from vpd_stream.testing import make_clip

REPO = Path(__file__).resolve().parents[1]
VPD = ["tracker", "crop", "flow", "student", "detector", "recognizer"]


def test_the_vpd_preset_is_shipped():
    assert "vpd" in preset_names()
    data = load_preset("vpd")
    assert data["pipeline"]["chain"] == VPD and "pose" not in data["pipeline"]["chain"]
    assert data["plugins"]["detector"]["features"] == "embedding"
    assert data["plugins"]["recognizer"]["features"] == "embedding"


def test_expand_chain_fills_only_unset_keys():
    chain, tables = expand_chain(["vpd"], {"recognizer": {"features": "pose", "method": "nns"}})
    assert chain == VPD
    assert tables["recognizer"] == {"features": "pose", "method": "nns"}  # the user's values win
    assert tables["detector"]["features"] == "embedding"
    # Not a preset, several names, or a registered plugin of that name: unchanged.
    assert expand_chain(["tracker"], {}) == (["tracker"], {})
    assert expand_chain(["vpd", "framerecord"], {}) == (["vpd", "framerecord"], {})
    assert expand_chain(["vpd"], {}, registered={"vpd"}) == (["vpd"], {})


@pytest.fixture(scope="module")
def embedding_heads(tmp_path_factory) -> dict[str, str]:
    """The shipped heads' networks saved as heads on 26-d embeddings: the shape a head trained
    on a 2D-VPD student's features has (their weights were trained on pose: not for accuracy)."""
    root = tmp_path_factory.mktemp("heads")
    out = {}
    for name, kind in (("penn_swing_detector", "detector"), ("penn_recognizer", "recognizer")):
        bundle = load_heads(REPO / "plugins" / "weights" / name, kind=kind)
        bundle.meta = {**bundle.meta, "features": "embedding", "feature_set": "student (test)"}
        save_heads(root / name, bundle)
        out[kind] = str(root / name)
    return out


def test_build_plugins_expands_the_preset(embedding_heads):
    config = config_from_dict({"pipeline": {"chain": ["vpd"]},
                               "plugins": {"student": {"random_init": True},
                                           "detector": {"weights": embedding_heads["detector"]},
                                           "recognizer": {"weights": embedding_heads["recognizer"]}}})
    plugins = build_plugins(config)
    assert [p.name for p in plugins] == VPD and config.pipeline.chain == VPD
    detector = plugins[VPD.index("detector")]
    assert detector.options.features == "embedding" and "embedding" in detector.requires
    assert plugins[VPD.index("student")].options.max_batch == 32


@pytest.mark.slow
def test_vpd_chain_runs_from_the_command_line(embedding_heads, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=30, size=(320, 240))
    config = tmp_path / "run.toml"
    config.write_text(f'[plugins.student]\nrandom_init = true\nrandom_dim = 26\n'
                      f'[plugins.detector]\nweights = "{embedding_heads["detector"]}"\n'
                      f'[plugins.recognizer]\nweights = "{embedding_heads["recognizer"]}"\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_cli("run", str(clip), "--chain", "vpd", "--config", str(config), "-o", str(out), timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    records = jsonl_records(out)
    frames = [r for r in records if r["type"] == "frame"]
    assert len(frames) == 30
    tracked = [t for r in frames for t in r.get("tracks") or []]
    assert tracked and all("embedding" in t for t in tracked if "crop_box" in t)
    assert not any("keypoints" in t for t in tracked)  # no pose teacher in this chain
    assert "student: onnxruntime fp32" in result.stderr.decode()  # the summary says which path ran


def test_vpd_chain_with_pose_heads_is_refused_in_one_line(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=5, size=(160, 120))
    result = run_cli("run", str(clip), "--chain", "vpd", "-o", str(tmp_path / "o.jsonl"), timeout=300)
    assert result.returncode in (2, 3)
    assert_clean_error(result, "[plugins.")
