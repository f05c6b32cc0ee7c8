"""Student checkpoints: weights in safetensors, a JSON sidecar that says what they are.

``student.safetensors`` holds the tensors; ``student.json`` next to it holds the
architecture, the embedding dimension d, the input normalization, the teacher kind, a
hash of the training data and the sha256 of the weights file. Loading checks all of it,
and anything that does not match raises a one-line ``ModelError``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .resnet import StudentConfig, StudentResNet
from .weights_file import read_sidecar, sidecar_path, write_model_file

FORMAT = "vpd-stream/student"
FORMAT_VERSION = 1
TEACHER_KINDS = ("pose2d", "vipe", "random")
FLOW_ENCODING = {"clip_px": 20.0, "levels": 255, "model_input": "uint8/255-0.5"}


@dataclass
class StudentMeta:
    """The sidecar's content."""

    config: StudentConfig
    teacher: str = "random"  # pose2d | vipe | random (seeded, untrained: pipeline testing only)
    training_data_hash: str = ""
    weights_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": cfg.architecture,
            "dim": cfg.dim,
            "input_size": cfg.input_size,
            "in_channels": cfg.in_channels,
            "normalization": {"rgb_mean": list(cfg.rgb_mean), "rgb_std": list(cfg.rgb_std),
                              "flow": dict(FLOW_ENCODING)},
            "teacher": self.teacher,
            "training_data_hash": self.training_data_hash,
            "weights_sha256": self.weights_sha256,
            "extra": self.extra,
        }


def save_student(model: StudentResNet, path: str | Path, *, teacher: str = "random",
                 training_data_hash: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its JSON sidecar; return the weights path."""
    if teacher not in TEACHER_KINDS:
        raise ValueError(f"teacher must be one of {TEACHER_KINDS}, got {teacher!r}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"student weights must be a .safetensors file, got {path}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = StudentMeta(dataclasses.replace(model.config), teacher, training_data_hash, "", dict(extra or {}))
    sidecar = {k: v for k, v in meta.to_json().items() if k not in ("format", "format_version", "weights_sha256")}
    return write_model_file(path, state, sidecar, FORMAT, FORMAT_VERSION)


def read_meta(path: str | Path, verify_hash: bool = False) -> StudentMeta:
    """Parse and check the sidecar of weights file ``path``."""
    side = sidecar_path(path)
    data = read_sidecar(path, FORMAT, FORMAT_VERSION, "student model",
                        "train one with `vpd-stream distill` or re-export it", verify_hash=verify_hash)
    try:
        norm = data["normalization"]
        config = StudentConfig(architecture=str(data["architecture"]), dim=int(data["dim"]),
                               input_size=int(data["input_size"]), in_channels=int(data["in_channels"]),
                               rgb_mean=[float(v) for v in norm["rgb_mean"]],
                               rgb_std=[float(v) for v in norm["rgb_std"]])
        config.validate()
        flow = norm.get("flow", {})
        teacher = str(data["teacher"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"student sidecar {side} is invalid ({exc!s}); re-export the model") from None
    if flow != FLOW_ENCODING:
        raise ModelError(f"{side} expects flow encoded as {flow}, the flow plugin emits {FLOW_ENCODING}; retrain the student")
    if teacher not in TEACHER_KINDS:
        raise ModelError(f"{side}: unknown teacher kind {teacher!r} (expected one of {', '.join(TEACHER_KINDS)})")
    return StudentMeta(config, teacher, str(data.get("training_data_hash", "")),
                       str(data.get("weights_sha256", "")), dict(data.get("extra") or {}))


def check_expectation(meta: StudentMeta, path: str | Path, *, dim: int | None = None,
                      teacher: str | None = None) -> None:
    """Fail clearly when the checkpoint is not the one the caller was configured for."""
    if dim is not None and meta.config.dim != dim:
        raise ModelError(f"student model {path} outputs d={meta.config.dim}, but d={dim} is expected; "
                         f"use a model distilled for d={dim} or change the expected dim")
    if teacher is not None and meta.teacher != teacher:
        raise ModelError(f"student model {path} was distilled from a '{meta.teacher}' teacher, "
                         f"but '{teacher}' is expected; pick the matching model")


def load_student(path: str | Path, *, dim: int | None = None, teacher: str | None = None,
                 verify_hash: bool = True) -> tuple[StudentResNet, StudentMeta]:
    """Load and validate a checkpoint; the model is returned in eval mode on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path, verify_hash=verify_hash)
    check_expectation(meta, path, dim=dim, teacher=teacher)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"student weights {path} cannot be read ({exc}); re-export the model") from None
    model = StudentResNet(meta.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelError(f"student weights {path} do not fit a {meta.config.architecture} with d={meta.config.dim} ({what}); the sidecar does not describe these weights")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(f"student weights {path}: tensor {key} has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(tensor.shape)}; the sidecar does not describe these weights")
    model.load_state_dict(state)
    return model.eval(), meta
