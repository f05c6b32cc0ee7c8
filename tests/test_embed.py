"""Embedding a corpus: the feature files, and consistency with the stream's student plugin."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from offline_train.benchmarks.distill import make_synthetic_store
from offline_train.corpus.store import CorpusStore
from offline_train.embed import EmbedOptions, embed_store, load_features
from vpd_stream.annotations import Crop
from vpd_stream.frame import Frame
from vpd_stream.models.checkpoint import save_student
from vpd_stream.models.resnet import StudentConfig, build_student, randomize_batchnorm
from vpd_stream.plugin import PluginContext


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    store = make_synthetic_store(root / "store", videos=2, frames=9)
    model = build_student(StudentConfig(architecture="resnet18", rgb_mean=[0.1, 0.0, -0.1],
                                        rgb_std=[0.5, 0.6, 0.7]), seed=3)
    randomize_batchnorm(model, seed=4)  # non-trivial BatchNorm, as trained weights have
    path = save_student(model, root / "student.safetensors", teacher="pose2d")
    return store, path, root


@pytest.fixture(scope="module")
def second_student(corpus):
    """A 32-d student labelled as distilled from VIPE*: the VI-VPD half of Concat-VPD."""
    _, _, root = corpus
    model = build_student(StudentConfig(architecture="resnet18", dim=32, rgb_mean=[0.0, 0.1, 0.2],
                                        rgb_std=[0.6, 0.5, 0.4]), seed=7)
    randomize_batchnorm(model, seed=8)
    return save_student(model, root / "vi_vpd.safetensors", teacher="vipe")


def _plugin_embeddings(store: CorpusStore, name: str, model: str, engine: str, cache: str,
                       concat: str | None = None) -> np.ndarray:
    """Run the stream's student plugin on Frames made from the store's rows."""
    from plugins.student import StudentPlugin

    plugin = StudentPlugin(StudentPlugin.Options(model=model, engine=engine, cache_dir=cache, max_batch=8,
                                                 concat=concat))
    plugin.setup(PluginContext(engine=engine))
    with store.open(name) as video:
        crops, flows, _ = video.images(np.arange(video.rows))
        frames = []
        for i in range(video.rows):
            f = Frame(name, int(video.arrays["frame"][i]), float(video.arrays["pts"][i]), np.zeros((4, 4, 3), np.uint8))
            f.annotations["crop"] = {1: Crop(crops[i], crops[i], video.arrays["crop_box"][i])}
            f.annotations["flow"] = {1: flows[i]}
            frames.append(f)
    for start in range(0, len(frames), 3):  # other batch boundaries than embed's
        plugin.process(frames[start:start + 3])
    plugin.close()
    return np.stack([f.annotations["embedding"][1].vector for f in frames]), \
        np.stack([f.annotations["embedding"][1].flipped for f in frames])


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_embed_matches_the_student_plugin(corpus, engine, tmp_path):
    torch.set_num_threads(2)
    store, model, root = corpus
    out = tmp_path / "features"
    result = embed_store(EmbedOptions(store=str(store.root), model=str(model), out=str(out), engine=engine,
                                      max_batch=8, cache_dir=str(root / "cache"), progress=False))
    assert result == {"videos": 2, "rows": 18, "dim": 26}
    manifest = json.loads((out / "features.json").read_text())
    assert manifest["dim"] == 26 and manifest["engine"] == engine and set(manifest["videos"]) == {"synthetic00", "synthetic01"}
    feats = load_features(out / "synthetic01.npz")
    assert feats["embedding"].shape == (9, 26) and feats["embedding_flipped"].shape == (9, 26)
    assert feats["frame"].tolist() == list(range(9)) and feats["track_id"].tolist() == [1] * 9
    np.testing.assert_allclose(feats["pts"], np.arange(9) / 25.0)
    assert not np.allclose(feats["embedding"], feats["embedding_flipped"])
    live, live_flipped = _plugin_embeddings(store, "synthetic01", str(model), engine, str(root / "cache"))
    np.testing.assert_allclose(feats["embedding"], live, atol=1e-4, rtol=0)
    np.testing.assert_allclose(feats["embedding_flipped"], live_flipped, atol=1e-4, rtol=0)


@pytest.mark.parametrize("spelling", ["concat", "comma"])
def test_concat_embedding_is_the_two_students_stacked(corpus, second_student, tmp_path, spelling):
    """Concat-VPD in embed: [A | B] and [A flipped | B flipped], equal to the plugin's with concat."""
    torch.set_num_threads(2)
    store, model, root = corpus
    common = dict(store=str(store.root), engine="onnxruntime", max_batch=8, cache_dir=str(root / "cache"),
                  progress=False)
    single = {}
    for key, m in (("a", model), ("b", second_student)):
        embed_store(EmbedOptions(model=str(m), out=str(tmp_path / key), **common))
        single[key] = load_features(tmp_path / key / "synthetic00.npz")
    if spelling == "concat":
        opts = EmbedOptions(model=str(model), concat=str(second_student), out=str(tmp_path / "ab"), **common)
    else:
        opts = EmbedOptions(model=f"{model},{second_student}", out=str(tmp_path / "ab"), **common)
    assert embed_store(opts) == {"videos": 2, "rows": 18, "dim": 58}
    feats = load_features(tmp_path / "ab" / "synthetic00.npz")
    for key in ("embedding", "embedding_flipped"):
        assert feats[key].shape == (9, 58)
        np.testing.assert_array_equal(feats[key], np.concatenate([single["a"][key], single["b"][key]], axis=1))
    manifest = json.loads((tmp_path / "ab" / "features.json").read_text())
    assert manifest["dim"] == 58 and manifest["model"]["teacher"] == "concat"
    assert [(p["teacher"], p["dim"]) for p in manifest["model"]["parts"]] == [("pose2d", 26), ("vipe", 32)]
    live, live_flipped = _plugin_embeddings(store, "synthetic00", str(model), "onnxruntime", str(root / "cache"),
                                            concat=str(second_student))
    np.testing.assert_allclose(feats["embedding"], live, atol=1e-4, rtol=0)
    np.testing.assert_allclose(feats["embedding_flipped"], live_flipped, atol=1e-4, rtol=0)


def test_concat_errors(corpus, second_student, tmp_path):
    from vpd_stream.errors import ConfigError, ModelError

    store, model, root = corpus
    small = save_student(build_student(StudentConfig(architecture="resnet18", input_size=64), seed=1),
                         root / "small.safetensors", teacher="pose2d")
    with pytest.raises(ModelError, match="same crop size"):
        embed_store(EmbedOptions(store=str(store.root), model=str(model), concat=str(small), out=str(tmp_path / "x"),
                                 engine="torch", progress=False))
    with pytest.raises(ConfigError, match="at most two"):
        embed_store(EmbedOptions(store=str(store.root), model=f"{model},{second_student},{model}",
                                 out=str(tmp_path / "x"), engine="torch", progress=False))
    with pytest.raises(ModelError, match="does not exist"):
        embed_store(EmbedOptions(store=str(store.root), model=str(model), concat=str(tmp_path / "no.safetensors"),
                                 out=str(tmp_path / "x"), engine="torch", progress=False))
    assert not (tmp_path / "x").exists()


def test_embed_cli_concat(corpus, second_student, tmp_path):
    from click.testing import CliRunner

    from offline_train.commands import embed

    store, model, _ = corpus
    result = CliRunner().invoke(embed, [str(store.root), "--model", str(model), "--concat", str(second_student),
                                        "--out", str(tmp_path / "f"), "--engine", "torch", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "f" / "features.json").read_text())
    assert manifest["dim"] == 58 and manifest["model"]["teacher"] == "concat"


def test_embed_cli_and_errors(corpus, tmp_path):
    from click.testing import CliRunner

    from offline_train.commands import embed
    from vpd_stream.errors import InputError, ModelError

    store, model, _ = corpus
    result = CliRunner().invoke(embed, [str(store.root), "--model", str(model), "--out", str(tmp_path / "f"),
                                        "--engine", "torch", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["features.json", "synthetic00.npz", "synthetic01.npz"]
    with pytest.raises(InputError, match="no such corpus store"):
        embed_store(EmbedOptions(store=str(tmp_path / "nope"), model=str(model), out=str(tmp_path / "g")))
    with pytest.raises(ModelError, match="does not exist"):
        embed_store(EmbedOptions(store=str(store.root), model=str(tmp_path / "missing.safetensors"),
                                 out=str(tmp_path / "g")))


def _real_chain_available() -> bool:
    return all(importlib.util.find_spec(f"plugins.{n}") is not None for n in ("tracker", "pose", "crop", "flow"))


@pytest.fixture(scope="module")
def real_store(videos_dir, tmp_path_factory):
    """lunge_cam01, first 10 frames at 25 fps, through the real prepare chain (one per module)."""
    from offline_train.corpus.parallel import prepare_corpus
    from offline_train.corpus.prepare import PrepareSettings

    root = tmp_path_factory.mktemp("real")
    video = str(videos_dir / "lunge_cam01.mp4")
    summary = prepare_corpus([video], str(root / "s"), PrepareSettings(fps=25.0, max_frames=10), progress=False)
    assert not summary.failed, summary.lines()
    return video, root / "s", 10


@pytest.mark.slow
@pytest.mark.skipif(not _real_chain_available(), reason="the tracker/pose/crop/flow plugins are not installed yet")
@pytest.mark.parametrize("students", ["2d-vpd", "vi-vpd", "concat"])
def test_embed_equals_the_live_pipeline_on_real_video(corpus, second_student, real_store, students, tmp_path):
    """prepare → embed, against `run` with tracker,crop,flow,student on the same file and engine:
    a 26-d (2D-VPD-shaped) student, a 32-d VI-VPD-shaped one, and the two concatenated."""
    from vpd_stream.runner import build_plugins
    from vpd_stream.config import config_from_dict
    from vpd_stream.pipeline import Pipeline
    from vpd_stream.sinks import Sink
    from vpd_stream.sources import VideoSource

    _, model, root = corpus
    video, store, frames = real_store
    options = {"2d-vpd": {"model": str(model)}, "vi-vpd": {"model": str(second_student)},
               "concat": {"model": str(model), "concat": str(second_student)}}[students]
    dim = {"2d-vpd": 26, "vi-vpd": 32, "concat": 58}[students]
    embed_store(EmbedOptions(store=str(store), out=str(tmp_path / "f"), engine="onnxruntime",
                             cache_dir=str(root / "cache"), progress=False, **options))
    feats = load_features(tmp_path / "f" / "lunge_cam01.npz")
    assert len(feats["frame"]) >= frames - 3 and feats["embedding"].shape[1] == dim

    class Collect(Sink):
        def __init__(self):
            self.by_key = {}

        def write_frame(self, frame, plugins):
            for tid, e in (frame.annotations.get("embedding") or {}).items():
                self.by_key[(frame.index, tid)] = e

    config = config_from_dict({"pipeline": {"chain": ["tracker", "crop", "flow", "student"]},
                               "plugins": {"student": {**options, "precision": "fp32",  # embed's precision
                                                       "cache_dir": str(root / "cache")}}})
    sink = Collect()
    Pipeline([VideoSource(video, "lunge_cam01", target_fps=25.0, max_frames=frames)], build_plugins(config), [sink],
             context=PluginContext(engine="onnxruntime", target_fps=25.0)).run()
    assert len(sink.by_key) == len(feats["frame"])
    for i, (f, tid) in enumerate(zip(feats["frame"].tolist(), feats["track_id"].tolist())):
        live = sink.by_key[(f, tid)]
        assert live.vector.shape == (dim,)
        np.testing.assert_allclose(feats["embedding"][i], live.vector, atol=1e-4, rtol=0)
        np.testing.assert_allclose(feats["embedding_flipped"][i], live.flipped, atol=1e-4, rtol=0)


def test_compare_with_live_matches_rows_by_frame_and_track(tmp_path):
    from offline_train.embed import compare_with_live
    from vpd_stream.errors import InputError

    rng = np.random.default_rng(0)
    emb, flipped = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    frame, track = np.array([3, 3, 4, 6]), np.array([1, 2, 1, 1])
    np.savez(tmp_path / "v.npz", embedding=emb, embedding_flipped=flipped, frame=frame, track_id=track)

    def write(rows, bump=0.0):
        lines = [json.dumps({"type": "frame", "stream": "v", "frame": 0})]
        for i in rows:
            t = {"track_id": int(track[i]), "embedding": [round(float(v) + bump, 5) for v in emb[i]],
                 "embedding_flipped": [round(float(v), 5) for v in flipped[i]]}
            lines.append(json.dumps({"type": "frame", "stream": "v", "frame": int(frame[i]), "tracks": [t]}))
        (tmp_path / "live.jsonl").write_text("\n".join(lines) + "\n")
        return compare_with_live(tmp_path / "live.jsonl", tmp_path / "v.npz")

    r = write([3, 0, 1])  # order does not matter; row 2 was not embedded live
    assert r["live"] == 3 and r["rows"] == 4 and r["rows_not_live"] == 1 and r["dim"] == 5
    assert r["max_abs_diff"] <= 5e-6 + 1e-9
    assert write([0, 1, 2, 3], bump=1e-3)["max_abs_diff"] == pytest.approx(1e-3, abs=1e-5)
    frame[2] = 5
    np.savez(tmp_path / "v.npz", embedding=emb, embedding_flipped=flipped, frame=frame, track_id=track)
    frame[2] = 4
    with pytest.raises(InputError, match="frame 4 track 1 was embedded live but is not in"):
        write([2])
