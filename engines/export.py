"""ONNX export with a dynamic batch axis (the classic TorchScript exporter, opset ≥ 17).

The classic exporter (``dynamo=False``) is used because it needs no onnxscript and folds
eval-mode BatchNorm into the convolutions. ``precision="fp16"`` exports the network with
half weights (the strongly-typed FP16 ONNX that TensorRT 11 builds from); outputs stay
float32 either way, so callers never see the difference.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vpd_stream.errors import ModelError

DEFAULT_OPSET = 17
EXPORT_PRECISIONS = ("fp32", "fp16")


class _Float32Outputs(nn.Module):
    """Wraps a module so every floating output leaves as float32."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> Any:
        out = self.module(*args)
        if isinstance(out, torch.Tensor):
            return out.float()
        return tuple(o.float() if o.is_floating_point() else o for o in out)


def export_onnx(module: nn.Module, example_inputs: dict[str, np.ndarray], path: str | Path, *,
                output_names: list[str] | tuple[str, ...], precision: str = "fp32",
                opset: int = DEFAULT_OPSET, metadata: dict[str, str] | None = None,
                dynamic_axes: dict[str, dict[int, str]] | None = None) -> Path:
    """Export ``module`` (forward takes ``example_inputs``' keys in order) to ``path``.

    Every input and output gets a dynamic leading ``batch`` axis; ``dynamic_axes`` adds
    others (a sequence head's ``{1: "time"}``) per input or output name. The file is written
    atomically (a partial export never masquerades as a model), then checked by onnx.
    """
    import onnx

    if precision not in EXPORT_PRECISIONS:
        raise ModelError(f"ONNX export writes fp32 or fp16, not '{precision}' (int8 comes from `quantize`)")
    if opset < 17:
        raise ModelError(f"ONNX opset {opset} is too old; use 17 or newer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().cpu()
    if precision == "fp16":
        module = _half_copy(module)
    wrapped = _Float32Outputs(module).eval()
    names = list(example_inputs)
    args = tuple(torch.from_numpy(np.ascontiguousarray(example_inputs[n])) for n in names)
    dynamic = {n: {0: "batch", **(dynamic_axes or {}).get(n, {})} for n in [*names, *output_names]}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice, not ours to fix
            torch.onnx.export(wrapped, args, str(tmp), dynamo=False, opset_version=opset,
                              input_names=names, output_names=list(output_names),
                              dynamic_axes=dynamic, do_constant_folding=True)
        model = onnx.load(str(tmp))
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _half_copy(module: nn.Module) -> nn.Module:
    import copy

    half = copy.deepcopy(module).half()
    for buf_owner in half.modules():  # non-persistent buffers (input normalization) too
        for name, buf in list(buf_owner._buffers.items()):
            if buf is not None and buf.is_floating_point():
                buf_owner._buffers[name] = buf.half()
    return half


def student_example_inputs(input_size: int = 128, batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"rgb": rng.integers(0, 256, (batch, input_size, input_size, 3), dtype=np.uint8),
            "flow": rng.integers(0, 256, (batch, 2, input_size, input_size), dtype=np.uint8)}


def export_student(model: nn.Module, path: str | Path, *, precision: str = "fp32",
                   opset: int = DEFAULT_OPSET, sidecar: dict[str, Any] | None = None) -> Path:
    """Export a StudentResNet; its sidecar travels in the ONNX metadata (``vpd_student``)."""
    config = model.config
    meta = {"vpd_student": json.dumps(sidecar or {}, sort_keys=True), "vpd_precision": precision}
    return export_onnx(model, student_example_inputs(config.input_size), path,
                       output_names=list(model.output_names), precision=precision, opset=opset,
                       metadata=meta)
