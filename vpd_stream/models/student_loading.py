"""Finding and validating a VPD student: a distilled checkpoint, an exported ONNX file, or a
seeded random student for pipeline tests. Engines, plugins and offline code share it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vpd_stream.errors import ModelError

NO_MODEL = ("the student plugin needs a model: set [plugins.student] model = \"student.safetensors\" "
            "(train one with `vpd-stream distill`), or random_init = true to test the pipeline "
            "with an untrained student")


@dataclass
class StudentModel:
    """A resolved student: the torch module (when the checkpoint has one), its ONNX file
    (when it came as one), the sidecar's JSON and an identity hash for the engine cache."""

    module: Any | None
    onnx_path: Path | None
    sidecar: dict[str, Any]
    weights_sha256: str
    dim: int
    input_size: int
    onnx_precision: str | None = None  # what an exported ONNX file holds (fp32, fp16, int8)


def resolve_student(model: str | None, *, random_init: bool = False, seed: int = 0, random_dim: int = 26,
                    dim: int | None = None, teacher: str | None = None,
                    model_dir: str | None = None) -> StudentModel:
    """Find and validate the student the options describe (see ``NO_MODEL`` for the rules)."""
    from vpd_stream.models.checkpoint import StudentMeta, check_expectation, load_student
    from vpd_stream.models.resnet import StudentConfig, build_student

    if model is None and not random_init and model_dir:
        default = Path(model_dir) / "student.safetensors"
        model = str(default) if default.is_file() else None
    if model is None:
        if not random_init:
            raise ModelError(NO_MODEL)
        module = build_student(StudentConfig(dim=random_dim), seed=seed).eval()
        meta = StudentMeta(module.config, teacher="random", extra={"seed": seed})
        check_expectation(meta, f"random_init(seed={seed})", dim=dim, teacher=teacher)
        digest = hashlib.sha256(json.dumps(meta.to_json(), sort_keys=True).encode())
        for value in module.state_dict().values():
            digest.update(value.numpy().tobytes())
        return StudentModel(module, None, meta.to_json(), digest.hexdigest(), module.config.dim,
                            module.config.input_size)
    path = Path(model).expanduser()
    if path.suffix == ".onnx":
        return _resolve_onnx(path, dim=dim, teacher=teacher)
    module, meta = load_student(path, dim=dim, teacher=teacher)
    return StudentModel(module, None, meta.to_json(), meta.weights_sha256, meta.config.dim,
                        meta.config.input_size)


def _resolve_onnx(path: Path, *, dim: int | None, teacher: str | None) -> StudentModel:
    from vpd_stream.models.weights_file import file_sha256

    if not path.is_file():
        raise ModelError(f"student model {path} does not exist; create it with `vpd-stream export`")
    try:
        meta = onnx_metadata(path)
        sidecar = json.loads(meta.get("vpd_student", "null"))
    except Exception:  # not ONNX at all, or metadata that is not JSON
        meta, sidecar = {}, None
    if not isinstance(sidecar, dict) or "dim" not in sidecar:
        raise ModelError(f"{path} is not a student exported by `vpd-stream export` (no vpd_student metadata)")
    if dim is not None and sidecar["dim"] != dim:
        raise ModelError(f"student model {path} outputs d={sidecar['dim']}, but d={dim} is expected")
    if teacher is not None and sidecar.get("teacher") != teacher:
        raise ModelError(f"student model {path} was distilled from a '{sidecar.get('teacher')}' teacher, "
                         f"but '{teacher}' is expected")
    return StudentModel(None, path, sidecar, file_sha256(path), int(sidecar["dim"]),
                        int(sidecar.get("input_size", 128)), meta.get("vpd_precision", "fp32"))


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata properties of an ONNX file (its weights are not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def check_concat(students: list[StudentModel], names: list[str]) -> None:
    """Students whose embeddings are stacked must read the same crops."""
    sizes = {s.input_size for s in students}
    if len(sizes) > 1:
        detail = ", ".join(f"{n}: {s.input_size}px" for n, s in zip(names, students))
        raise ModelError(f"students to concatenate must take the same crop size ({detail})")


def concat_sidecar(students: list[StudentModel]) -> dict[str, Any]:
    """What a stacked embedding is made of: per part its teacher, d and weights hash."""
    return {"parts": [{"teacher": s.sidecar.get("teacher"), "dim": s.dim, "sha256": s.weights_sha256}
                      for s in students]}


def flip_inputs(rgb: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror (N, H, W, 3) crops and (N, 2, H, W) uint8 flow left-right; flow x is negated.

    In the student's input space flow is q/255 − 0.5, so 255 − q is its exact negation.
    """
    rgb_f = rgb[:, :, ::-1, :]
    flow_f = flow[:, :, :, ::-1].copy()
    flow_f[:, 0] = 255 - flow_f[:, 0]
    return np.ascontiguousarray(rgb_f), flow_f
