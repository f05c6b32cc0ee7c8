"""Corpus preparation: the pipeline into the store, failures, resumption, workers, Ray.

The fast tests drive ``prepare_corpus`` with a small synthetic chain (one plugin that
provides tracks, pose, crop and flow from the generated clip's pixels), so they exercise
the real pipeline, sink, store, manifest, resumption and worker pool in seconds. The
real chain (tracker → pose → crop → flow) on the real lunge video is the slow test.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clips import make_clip  # noqa: E402

from offline_train.corpus.parallel import prepare_corpus  # noqa: E402
from offline_train.corpus.prepare import PrepareSettings  # noqa: E402
from offline_train.corpus.store import CorpusStore  # noqa: E402
from vpd_stream.annotations import Crop, Pose, Track  # noqa: E402
from vpd_stream.flowcodec import encode_flow  # noqa: E402
from vpd_stream.plugin import Plugin  # noqa: E402
from vpd_stream.skeleton import NUM_JOINTS, pose_features  # noqa: E402

FACTORY = "test_prepare:synthetic_chain"


class SyntheticPerception(Plugin):
    """Deterministic stand-in for tracker+pose+crop+flow, computed from the frame's pixels."""

    name = "synthetic"
    requires = ("rgb",)
    provides = ("tracks", "pose", "crop", "flow")

    @dataclass
    class Options:
        pass

    def process(self, batch):
        for frame in batch:
            h, w = frame.rgb.shape[:2]
            crop = np.ascontiguousarray(np.resize(frame.rgb[:, :, :], (128, 128, 3)))
            prev = frame.prev_rgb if frame.prev_rgb is not None else frame.rgb
            diff = frame.rgb.astype(np.float32).mean(-1) - prev.astype(np.float32).mean(-1)
            flow = encode_flow(np.stack([np.resize(diff, (128, 128))] * 2) / 10.0)
            x = float(frame.rgb[:, :, 0].mean())
            kp = np.array([[x + j * 3.0, 10.0 + 7.0 * j, 0.3 if frame.index % 5 == 4 else 0.9]
                           for j in range(NUM_JOINTS)], np.float32)
            box = np.array([0, 0, w, h], np.float32)
            frame.annotations["tracks"] = {1: Track(1, box, 0.9, True)}
            frame.annotations["pose"] = {1: Pose(kp, pose_features(kp), float(kp[:, 2].mean()))}
            frame.annotations["crop"] = {1: Crop(crop, crop, box)}
            frame.annotations["flow"] = {1: flow}


def synthetic_chain():
    return [SyntheticPerception()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    good = [make_clip(d / f"clip{i}.mp4", frames=12 + 3 * i, fps=25) for i in range(2)]
    bad = d / "broken.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    return good, bad


def test_prepare_reports_failures_and_resumes(tmp_path, clips):
    good, bad = clips
    out = tmp_path / "store"
    settings = PrepareSettings(fps=25.0, chain_factory=FACTORY)
    summary = prepare_corpus([str(good[0]), str(bad), str(good[1])], str(out), settings, progress=False)
    assert [e.name for e in summary.done] == ["clip0", "clip1"]
    assert [e.name for e in summary.failed] == ["broken"]
    assert "broken.mp4" in summary.failed[0].error and "not a video" in summary.failed[0].error
    assert [e.frames for e in summary.done] == [12, 15]
    assert [e.rows for e in summary.done] == [12, 15]
    assert summary.done[0].confident_rows == 10  # frames 4 and 9 have weak poses
    manifest = json.loads((out / "manifest.json").read_text())
    assert {n: v["status"] for n, v in manifest["videos"].items()} == {
        "clip0": "complete", "clip1": "complete", "broken": "failed"}
    lines = "\n".join(summary.lines())
    assert "FAILED broken" in lines and "27 frames" in lines
    store = CorpusStore(out)
    assert store.complete_videos() == ["clip0", "clip1"]
    with store.open("clip1") as v:
        assert v.attrs()["chain"] == ["synthetic"] and v.fps == 25.0
        assert v.arrays["prev_row"].tolist() == [-1] + list(range(14))
    before = {n: _sha(store.video_path(n)) for n in ("clip0", "clip1")}
    # A killed run leaves a temporary file; the next run removes it and resumes.
    (store.videos_dir / "clip2.h5.tmp-4242").write_bytes(b"partial")
    store.video_path("clip1").unlink()  # as if the run was killed before clip1 finished
    again = prepare_corpus([str(good[0]), str(good[1])], str(out), settings, progress=False)
    assert [e.name for e in again.resumed] == ["clip0"] and [e.name for e in again.done] == ["clip1"]
    assert not list(store.videos_dir.glob("*.tmp-*"))
    # ... and produces the same store
    assert {n: _sha(store.video_path(n)) for n in ("clip0", "clip1")} == before


def test_worker_processes_write_the_same_store(tmp_path, clips):
    good, _ = clips
    settings = PrepareSettings(fps=25.0, chain_factory=FACTORY)
    one = prepare_corpus([str(p) for p in good], str(tmp_path / "one"), settings, progress=False)
    two = prepare_corpus([str(p) for p in good], str(tmp_path / "two"), settings, workers=2, progress=False)
    assert not one.failed and not two.failed and len(two.done) == 2
    for name in ("clip0", "clip1"):
        assert _sha(CorpusStore(tmp_path / "one").video_path(name)) == _sha(CorpusStore(tmp_path / "two").video_path(name))


def test_prepare_cli_exit_status_and_summary(tmp_path, clips):
    from click.testing import CliRunner

    from offline_train.commands import prepare

    good, bad = clips
    result = CliRunner().invoke(prepare, [str(good[0]), str(bad), "--out", str(tmp_path / "s"), "-q",
                                          "--max-frames", "5"],
                                catch_exceptions=False, obj=None,
                                env={"PYTHONPATH": str(Path(__file__).parent)})
    # The CLI runs the standard chain; without the perception plugins installed every video fails,
    # with them clip0 is prepared. Either way the broken file is reported and the status is 1.
    assert result.exit_code == 1
    assert "FAILED broken" in result.output


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is an optional extra (pip install 'ray[default]')")
@pytest.mark.slow
def test_ray_backend_on_a_local_instance(tmp_path, clips):
    good, bad = clips
    settings = PrepareSettings(fps=25.0, chain_factory=FACTORY)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    try:
        summary = prepare_corpus([str(good[0]), str(bad), str(good[1])], str(tmp_path / "r"), settings,
                                 ray_address="local", progress=False)
    finally:
        ray.shutdown()
    assert [e.name for e in summary.done] == ["clip0", "clip1"] and [e.name for e in summary.failed] == ["broken"]
    ref = prepare_corpus([str(p) for p in good], str(tmp_path / "ref"), settings, progress=False)
    assert not ref.failed
    for name in ("clip0", "clip1"):
        assert _sha(CorpusStore(tmp_path / "r").video_path(name)) == _sha(CorpusStore(tmp_path / "ref").video_path(name))


def _real_chain_available() -> bool:
    return all(importlib.util.find_spec(f"plugins.{n}") is not None for n in ("tracker", "pose", "crop", "flow"))


@pytest.mark.slow
@pytest.mark.skipif(not _real_chain_available(), reason="the tracker/pose/crop/flow plugins are not installed yet")
def test_real_chain_on_the_lunge_video(tmp_path, videos_dir):
    settings = PrepareSettings(fps=25.0, max_frames=12)
    summary = prepare_corpus([str(videos_dir / "lunge_cam01.mp4")], str(tmp_path / "s"), settings, progress=False)
    assert not summary.failed, summary.lines()
    entry = summary.done[0]
    assert entry.frames == 12 and entry.rows >= 10  # one athlete, found in (nearly) every frame
    with CorpusStore(tmp_path / "s").open("lunge_cam01") as v:
        assert v.attrs()["chain"] == ["tracker", "pose", "crop", "flow"]
        assert (v.arrays["pose_score"] >= 0.5).mean() > 0.8  # a clearly visible athlete
