"""The heads on ONNX Runtime (engines.heads): parity with PyTorch, the cache, no torch in the default chain."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.heads import cached_head_onnx, ensemble_engine, head_engines, head_onnx_path
from plugins.detector import DEFAULT_DETECTOR, DetectorPlugin, run_windows
from plugins.recognizer import DEFAULT_RECOGNIZER
from vpd_stream.annotations import Pose, Track
from vpd_stream.errors import ModelError
from vpd_stream.frame import EndOfStream, Frame
from vpd_stream.heads.ensemble import predict_proba
from vpd_stream.models.head_io import HeadBundle, load_heads, read_head, save_heads
from vpd_stream.models.heads import Detector, HeadConfig, Recognizer
from vpd_stream.plugin import PluginContext
from vpd_stream.skeleton import flip_features

REPO = Path(__file__).resolve().parents[1]


def _save_detector(path: Path, seed: int = 0) -> None:
    torch.manual_seed(seed)
    models = [Detector(HeadConfig("detector", 26, hidden=16)).eval() for _ in range(2)]
    save_heads(path, HeadBundle(models[0].cfg, models, {"action": "swing", "features": "pose",
                                                        "mean_action_length": 20.0, "threshold": 0.5}))


def _save_recognizer(path: Path, seed: int = 0, members: int = 2) -> None:
    torch.manual_seed(seed)
    models = [Recognizer(HeadConfig("recognizer", 26, 3, hidden=16)).eval() for _ in range(members)]
    save_heads(path, HeadBundle(models[0].cfg, models, {"classes": ["a", "b", "c"], "features": "pose"}))


def test_detector_on_onnxruntime_matches_pytorch(tmp_path) -> None:
    _save_detector(tmp_path / "det")
    ort = head_engines(tmp_path / "det", "detector", cache_root=tmp_path / "cache")
    ref = head_engines(tmp_path / "det", "detector", backend="torch")
    assert ort.backend == "onnxruntime" and ort.engines[0].backend == "onnxruntime" and not ort.models
    assert ref.engines[0].backend == "torch" and len(ref.models) == 2
    assert ort.config == ref.config and ort.meta == ref.meta  # the same sidecar, read without torch
    rng = np.random.default_rng(1)
    windows = [rng.normal(size=(n, 26)).astype(np.float32) for n in (1, 5, 40, 40, 250)]
    for a, b in zip(run_windows(ort.engines[0], windows), run_windows(ref.engines[0], windows)):
        assert a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-5)
    assert "onnxruntime fp32" in ort.summary("detector") and "PyTorch" in ref.summary("detector")


def test_recognizer_on_onnxruntime_matches_pytorch(tmp_path) -> None:
    _save_recognizer(tmp_path / "rec")
    ort = head_engines(tmp_path / "rec", "recognizer", max_batch=100, cache_root=tmp_path / "cache")
    ref = head_engines(tmp_path / "rec", "recognizer", backend="torch", max_batch=100)
    assert len(ort.engines) == len(ref.engines) == 2 and len(ort.onnx_paths) == 2
    rng = np.random.default_rng(2)
    seqs = [rng.normal(size=(n, 26)).astype(np.float32) for n in (3, 17, 17, 60, 1)]
    p_ort = predict_proba(ort.engines, seqs, flip_features)
    p_ref = predict_proba(ref.models, seqs, flip_features)
    assert p_ort.shape == (5, 3) and np.allclose(p_ort, p_ref, rtol=0, atol=1e-5)
    assert np.array_equal(p_ort.argmax(1), p_ref.argmax(1))
    # The ONNX graph has no packed-sequence path: a padded batch is refused, not answered differently.
    with pytest.raises(ValueError, match="unpadded"):
        ort.engines[0].run({"x": np.zeros((2, 5, 26), np.float32), "lengths": np.array([5, 3])})


def test_export_is_cached_per_weights(tmp_path) -> None:
    _save_detector(tmp_path / "det", seed=0)
    _save_detector(tmp_path / "other", seed=1)
    first = head_engines(tmp_path / "det", "detector", cache_root=tmp_path / "cache").onnx_paths[0]
    stamp = first.stat().st_mtime_ns
    again = head_engines(tmp_path / "det", "detector", cache_root=tmp_path / "cache").onnx_paths[0]
    other = head_engines(tmp_path / "other", "detector", cache_root=tmp_path / "cache").onnx_paths[0]
    assert again == first and first.stat().st_mtime_ns == stamp  # reused, not exported again
    assert other != first and other.is_file()
    config, meta = read_head(tmp_path / "det", "detector")
    assert first == head_onnx_path("detector", 0, meta["weights_sha256"], tmp_path / "cache", config)


def test_an_edited_sidecar_is_not_served_the_cached_export(tmp_path) -> None:
    """Same tensors, another configuration: exported (and so checked) anew, not the old file."""
    _save_recognizer(tmp_path / "rec", members=1)
    first = head_engines(tmp_path / "rec", "recognizer", cache_root=tmp_path / "cache").onnx_paths[0]
    side = tmp_path / "rec.json"
    meta = json.loads(side.read_text())
    meta["config"]["arch"] = "transformer"
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="unknown arch 'transformer'"):
        head_engines(tmp_path / "rec", "recognizer", cache_root=tmp_path / "cache")
    assert first.is_file()


def test_damaged_cache_file_is_removed_with_one_clear_error(tmp_path) -> None:
    _save_detector(tmp_path / "det")
    path = head_engines(tmp_path / "det", "detector", cache_root=tmp_path / "cache").onnx_paths[0]
    path.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="could not be loaded and was removed"):
        head_engines(tmp_path / "det", "detector", cache_root=tmp_path / "cache")
    assert not path.exists()
    assert head_engines(tmp_path / "det", "detector", cache_root=tmp_path / "cache").onnx_paths[0].is_file()


def test_wrong_kind_and_broken_sidecar_are_model_errors(tmp_path) -> None:
    _save_detector(tmp_path / "det")
    with pytest.raises(ModelError, match="is a detector, but a recognizer is needed"):
        head_engines(tmp_path / "det", "recognizer", cache_root=tmp_path / "cache")
    side = tmp_path / "det.json"
    meta = json.loads(side.read_text())
    meta["config"].pop("input_dim")
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="cannot be read"):
        head_engines(tmp_path / "det", "detector", cache_root=tmp_path / "cache")


def test_detector_plugin_events_same_on_both_engines(tmp_path) -> None:
    """The plugin's activations and events on ONNX Runtime are PyTorch's within float tolerance."""
    _save_detector(tmp_path / "det")
    feats = np.random.default_rng(3).normal(size=(180, 26)).astype(np.float32)
    runs = {}
    for engine in ("torch", "onnxruntime"):
        plugin = DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "det"), window=40, stride=10,
                                                       lookahead=12, threshold=0.5))
        plugin.setup(PluginContext(engine=engine))
        frames = [Frame("s", i, i / 25, np.zeros((4, 4, 3), np.uint8),
                        annotations={"tracks": {1: Track(1, np.array([0, 0, 4, 4], np.float32), 0.9, True)},
                                     "pose": {1: Pose(np.zeros((13, 3), np.float32), f, 1.0)}})
                  for i, f in enumerate(feats)]
        for s in range(0, len(frames), 8):
            plugin.process(frames[s:s + 8])
        eos = EndOfStream("s", len(frames))
        plugin.end_stream(eos)
        acts = np.array([f.annotations["activation"].get(1, np.nan) for f in frames], dtype=float)
        events = [(e.start_frame, e.end_frame, e.score) for f in frames for e in f.events] + \
                 [(e.start_frame, e.end_frame, e.score) for e in eos.events]
        runs[engine] = (acts, events, plugin.summary_lines())
    (a_ref, e_ref, s_ref), (a_ort, e_ort, s_ort) = runs["torch"], runs["onnxruntime"]
    assert np.allclose(a_ort, a_ref, rtol=0, atol=1e-5, equal_nan=True)
    assert [e[:2] for e in e_ort] == [e[:2] for e in e_ref]
    assert np.allclose([e[2] for e in e_ort], [e[2] for e in e_ref], atol=1e-5)
    assert s_ref[0].startswith("detector: torch") and s_ort[0].startswith("detector: onnxruntime")


def test_engine_path_metric_names_the_heads_backend(tmp_path) -> None:
    from vpd_stream.metrics import Metrics

    _save_detector(tmp_path / "det")
    metrics = Metrics()
    plugin = DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "det")))
    plugin.setup(PluginContext(metrics=metrics))
    samples = [s for m in metrics.registry.collect() if m.name == "vpd_engine_path" for s in m.samples]
    assert any(s.labels["model"] == "detector" and s.labels["backend"] == "onnxruntime"
               and s.labels["precision"] == "fp32" and s.value == 1 for s in samples)


@pytest.mark.parametrize("export_here", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_default_heads_run_without_torch_in_a_fresh_process(tmp_path, export_here: bool) -> None:
    """The shipped heads' plugins set up and run in a process that never imports torch; their
    ONNX exported here (torch loaded) or, slow, by that process's own child export."""
    cache = tmp_path / "cache"
    if export_here:
        head_engines(DEFAULT_DETECTOR, "detector", cache_root=cache)
        head_engines(DEFAULT_RECOGNIZER, "recognizer", cache_root=cache)
    script = (
        "import sys, numpy as np\n"
        "from plugins.detector import DetectorPlugin\n"
        "from plugins.recognizer import RecognizerPlugin\n"
        "from vpd_stream.plugin import PluginContext\n"
        "from vpd_stream.heads.ensemble import predict_proba\n"
        "d, r = DetectorPlugin(), RecognizerPlugin()\n"
        "d.setup(PluginContext()); r.setup(PluginContext())\n"
        "x = np.random.default_rng(0).normal(size=(30, 26)).astype(np.float32)\n"
        "act = d.engine.run({'windows': x[None]})['activation'][0]\n"
        "p = predict_proba(r.engines, [x], None)[0]\n"
        "print('TORCH', 'torch' in sys.modules)\n"
        "print('ACT', ' '.join(f'{v:.7f}' for v in act)); print('P', ' '.join(f'{v:.7f}' for v in p))\n"
        "print(d.summary_lines()[0]); print(r.summary_lines()[0])\n")
    env = {**os.environ, "VPD_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["TORCH"] == "False"
    assert "detector: onnxruntime fp32" in out.stdout and "recognizer: onnxruntime fp32" in out.stdout
    assert len(list((cache / "onnx").glob("head-*.onnx"))) == 2
    # The same numbers as PyTorch in this process.
    x = np.random.default_rng(0).normal(size=(30, 26)).astype(np.float32)
    act = ensemble_engine(load_heads(DEFAULT_DETECTOR, kind="detector").models).run({"windows": x[None]})["activation"][0]
    p = predict_proba(load_heads(DEFAULT_RECOGNIZER, kind="recognizer").models, [x], None)[0]
    assert np.allclose([float(v) for v in lines["ACT"].split()], act, atol=1e-5)
    assert np.allclose([float(v) for v in lines["P"].split()], p, atol=1e-5)


def test_export_failure_is_one_model_error(tmp_path, monkeypatch) -> None:
    """A child export that fails (here: a head whose tensors do not fit its sidecar) is one line."""
    _save_recognizer(tmp_path / "rec", members=1)
    side = tmp_path / "rec.json"
    meta = json.loads(side.read_text())
    meta["config"]["hidden"] = 8  # the tensors are hidden 16
    side.write_text(json.dumps(meta))
    monkeypatch.delitem(sys.modules, "torch")  # pretend torch is not loaded: export in a child
    try:
        with pytest.raises(ModelError, match="exporting it to ONNX failed .*does not match its configuration"):
            cached_head_onnx(tmp_path / "rec", "recognizer", 0, meta["weights_sha256"], tmp_path / "cache")
    finally:
        monkeypatch.undo()
