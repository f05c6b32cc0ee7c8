"""Concat-VPD in the student plugin: `concat` stacks a second student's embedding after the first."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from plugins.student import StudentPlugin
from vpd_stream.annotations import Crop
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import Frame
from vpd_stream.models.checkpoint import save_student
from vpd_stream.models.resnet import StudentConfig, build_student, randomize_batchnorm
from vpd_stream.plugin import PluginContext


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """A 26-d '2D-VPD' and a 32-d 'VI-VPD' student (random weights, non-trivial BatchNorm)."""
    root = tmp_path_factory.mktemp("concat")
    paths = {}
    for name, dim, teacher, seed in (("2d", 26, "pose2d", 1), ("vi", 32, "vipe", 2)):
        model = build_student(StudentConfig(architecture="resnet18", dim=dim, rgb_mean=[0.1 * seed, 0.0, -0.1],
                                            rgb_std=[0.5, 0.6, 0.7]), seed=seed)
        randomize_batchnorm(model, seed=seed + 10)
        paths[name] = str(save_student(model, root / f"{name}.safetensors", teacher=teacher))
    return paths, root


def _frames(n_frames: int, tracks: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        f = Frame("s", i, i / 25.0, np.zeros((4, 4, 3), np.uint8))
        f.annotations["crop"] = {}
        f.annotations["flow"] = {}
        for t in range(tracks):
            rgb = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
            f.annotations["crop"][t] = Crop(rgb, rgb, np.array([0, 0, 128, 128], np.float32))
            f.annotations["flow"][t] = rng.integers(0, 256, (2, 128, 128), dtype=np.uint8)
        frames.append(f)
    return frames


def _run(engine: str, cache: str, **options) -> tuple[np.ndarray, np.ndarray, StudentPlugin]:
    plugin = StudentPlugin(StudentPlugin.Options(engine=engine, cache_dir=cache, max_batch=6, **options))
    plugin.setup(PluginContext(engine=engine))
    frames = _frames(4, 2)
    try:
        plugin.process(frames[:3])  # 6 tracks: 12 engine rows, chunked at 6
        plugin.process(frames[3:])
    finally:
        plugin.close()
    keys = [(f, t) for f in frames for t in (0, 1)]
    return (np.stack([f.annotations["embedding"][t].vector for f, t in keys]),
            np.stack([f.annotations["embedding"][t].flipped for f, t in keys]), plugin)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_concat_is_the_two_students_stacked(students, engine):
    torch.set_num_threads(2)
    paths, root = students
    cache = str(root / "cache")
    a, a_f, _ = _run(engine, cache, model=paths["2d"])
    b, b_f, _ = _run(engine, cache, model=paths["vi"])
    ab, ab_f, plugin = _run(engine, cache, model=paths["2d"], concat=paths["vi"], dim=58, teacher="pose2d")
    assert ab.shape == (8, 58) and ab_f.shape == (8, 58) and plugin.dim == 58
    assert [s.sidecar["teacher"] for s in plugin.students] == ["pose2d", "vipe"]
    np.testing.assert_array_equal(ab, np.concatenate([a, b], axis=1))
    np.testing.assert_array_equal(ab_f, np.concatenate([a_f, b_f], axis=1))
    assert not np.allclose(ab, ab_f)  # the flipped half is the mirrored crops' embedding, not a copy
    # The order is the options' order: [model | concat].
    ba, _, _ = _run(engine, cache, model=paths["vi"], concat=paths["2d"])
    np.testing.assert_array_equal(ba, np.concatenate([b, a], axis=1))


def test_concat_errors(students):
    paths, root = students
    small = str(save_student(build_student(StudentConfig(architecture="resnet18", input_size=64), seed=0),
                             root / "small.safetensors", teacher="pose2d"))
    cases = [({"model": paths["2d"], "concat": paths["vi"], "dim": 26}, ModelError, r"d=26\+32=58, but d=26"),
             ({"model": paths["2d"], "concat": small}, ModelError, "same crop size"),
             ({"model": paths["2d"], "concat": str(root / "missing.safetensors")}, ModelError, "does not exist"),
             ({"model": paths["2d"], "concat": paths["vi"], "teacher": "vipe"}, ModelError, "'pose2d' teacher")]
    for options, error, message in cases:
        plugin = StudentPlugin(StudentPlugin.Options(engine="torch", **options))
        with pytest.raises(error, match=message):
            plugin.setup(PluginContext(engine="torch"))
        assert plugin.engines == []  # nothing left open
    with pytest.raises(ConfigError, match="concat needs a trained"):
        StudentPlugin(StudentPlugin.Options(random_init=True, concat=paths["vi"]))
