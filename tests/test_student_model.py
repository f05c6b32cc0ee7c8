"""The student network, its in-model input normalization, checkpoints and sidecar checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vpd_stream.models.student_loading import flip_inputs
from vpd_stream import flowcodec
from vpd_stream.errors import ModelError
from vpd_stream.models.checkpoint import load_student, save_student, sidecar_path
from vpd_stream.models.resnet import InputNormalization, StudentConfig, build_student

torch.set_num_threads(2)


def _inputs(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"rgb": rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
            "flow": rng.integers(0, 256, (n, 2, 128, 128), dtype=np.uint8)}


def _run(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()


@pytest.mark.parametrize("dim", [26, 64])
def test_output_is_n_by_d_float32(dim: int) -> None:
    model = build_student(StudentConfig(dim=dim), seed=0).eval()
    out = _run(model, _inputs(2, np.random.default_rng()))
    assert out.shape == (2, dim) and out.dtype == np.float32 and np.isfinite(out).all()


def test_resnet34_has_the_paper_layout() -> None:
    model = build_student(StudentConfig(), seed=0)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 4, 6, 3]
    assert model.conv1.in_channels == 5
    # torchvision's resnet34 has 21,797,672 parameters (3 input channels, 1000 classes);
    # two more stem channels and a 26-d head instead of the 1000-class one give this count.
    expected = 21_797_672 + 2 * 64 * 49 - (512 * 1000 + 1000) + (512 * 26 + 26)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_normalization_maps_uint8_to_documented_ranges() -> None:
    norm = InputNormalization([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    rgb = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 2, 2, 3).contiguous()
    flow = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1).expand(1, 2, 2, 2).contiguous()
    x = norm(rgb, flow)[0, :, 0, 0]
    assert torch.allclose(x, torch.tensor([-1.0, 1.0, 51 / 127.5 - 1, -0.5, 0.5]), atol=1e-6)
    # Flow in the model is exactly what the flow codec says the student sees.
    q = np.arange(256, dtype=np.uint8).reshape(1, 2, 8, 16)
    ours = norm(torch.zeros(1, 8, 16, 3, dtype=torch.uint8), torch.from_numpy(q))[0, 3:].numpy()
    assert np.allclose(ours, flowcodec.student_input(q[0]), atol=1e-7)


def test_per_dataset_mean_std_applies_after_the_unit_range() -> None:
    norm = InputNormalization([0.1, -0.2, 0.3], [0.5, 0.25, 2.0])
    rgb = torch.full((1, 1, 1, 3), 200, dtype=torch.uint8)
    x = norm(rgb, torch.zeros(1, 2, 1, 1, dtype=torch.uint8))[0, :3, 0, 0]
    unit = 200 / 127.5 - 1
    assert torch.allclose(x, torch.tensor([(unit - 0.1) / 0.5, (unit + 0.2) / 0.25, (unit - 0.3) / 2.0]), atol=1e-5)


def test_seeded_initialisation_is_reproducible() -> None:
    a, b, c = (build_student(StudentConfig(), seed=s).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_flip_mirrors_rgb_and_negates_flow_x() -> None:
    rng = np.random.default_rng()
    x = _inputs(3, rng)
    rgb_f, flow_f = flip_inputs(x["rgb"], x["flow"])
    assert np.array_equal(rgb_f, x["rgb"][:, :, ::-1])
    seen = flowcodec.student_input(flow_f)
    orig = flowcodec.student_input(x["flow"])[..., ::-1]
    assert np.allclose(seen[:, 0], -orig[:, 0], atol=1e-6)  # x negated
    assert np.allclose(seen[:, 1], orig[:, 1], atol=1e-6)  # y kept
    back = flip_inputs(rgb_f, flow_f)
    assert np.array_equal(back[0], x["rgb"]) and np.array_equal(back[1], x["flow"])


# -- checkpoints -------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    model = build_student(StudentConfig(dim=32, rgb_mean=[0.1, 0.0, -0.1], rgb_std=[0.9, 1.0, 1.1]), seed=5).eval()
    path = save_student(model, tmp_path_factory.mktemp("ckpt") / "student.safetensors", teacher="vipe",
                        training_data_hash="abc123")
    return model, path


def test_checkpoint_round_trip_gives_identical_outputs(saved) -> None:
    model, path = saved
    loaded, meta = load_student(path, dim=32, teacher="vipe")
    assert meta.config == model.config and meta.teacher == "vipe" and meta.training_data_hash == "abc123"
    x = _inputs(2, np.random.default_rng())
    assert np.array_equal(_run(model, x), _run(loaded, x))
    side = json.loads(sidecar_path(path).read_text())
    assert side["architecture"] == "resnet34" and side["dim"] == 32
    assert side["normalization"]["rgb_std"] == [0.9, 1.0, 1.1]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400
    return text


def test_dim_mismatch_is_a_clear_error(saved) -> None:
    with pytest.raises(ModelError) as exc:
        load_student(saved[1], dim=26)
    assert "d=32" in _one_line(exc) and "d=26" in str(exc.value)


def test_teacher_mismatch_is_a_clear_error(saved) -> None:
    with pytest.raises(ModelError) as exc:
        load_student(saved[1], teacher="pose2d")
    assert "vipe" in _one_line(exc)


def test_missing_model_and_missing_sidecar(tmp_path, saved) -> None:
    with pytest.raises(ModelError) as exc:
        load_student(tmp_path / "nope.safetensors")
    assert "vpd-stream distill" in _one_line(exc)
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(saved[1].read_bytes())
    with pytest.raises(ModelError) as exc:
        load_student(lone)
    assert "sidecar" in _one_line(exc)


def test_sidecar_that_does_not_describe_the_weights(tmp_path, saved) -> None:
    path = tmp_path / "s.safetensors"
    path.write_bytes(saved[1].read_bytes())
    side = json.loads(sidecar_path(saved[1]).read_text())
    side["dim"] = 64  # claims a 64-d head for 32-d weights
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(ModelError) as exc:
        load_student(path)
    assert "fc.weight" in _one_line(exc)
    side["dim"], side["architecture"] = 32, "resnet18"
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(ModelError, match="resnet18"):
        load_student(path)


def test_corrupt_weights_fail_the_hash_check(tmp_path, saved) -> None:
    path = tmp_path / "s.safetensors"
    data = bytearray(saved[1].read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    sidecar_path(path).write_text(sidecar_path(saved[1]).read_text())
    with pytest.raises(ModelError) as exc:
        load_student(path)
    assert "sha256" in _one_line(exc)


def test_wrong_flow_encoding_is_refused(tmp_path, saved) -> None:
    path = tmp_path / "s.safetensors"
    path.write_bytes(saved[1].read_bytes())
    side = json.loads(sidecar_path(saved[1]).read_text())
    side["normalization"]["flow"]["clip_px"] = 10.0
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(ModelError) as exc:
        load_student(path)
    assert "flow" in _one_line(exc)
