"""Inference backends behind one interface (``engines.base.Engine``).

``create_engine`` picks one by name: ``torch`` runs an ``nn.Module`` (the reference),
``onnxruntime`` and ``tensorrt`` run an ONNX file. Backends import lazily, so a machine
without TensorRT only fails when TensorRT is asked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Engine
from vpd_stream.errors import ConfigError, ModelError

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def create_engine(backend: str, *, module: Any = None, onnx_path: str | Path | None = None,
                  max_batch: int = 32, device: str = "cpu", precision: str = "fp32",
                  **options: Any) -> Engine:
    """Build the ``backend`` engine for ``module`` (torch) or ``onnx_path`` (the others)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown engine '{backend}'; choose one of {', '.join(BACKENDS)}")
    if max_batch < 1:
        raise ConfigError(f"max_batch must be at least 1, got {max_batch}")
    if backend == "torch":
        from .torch_engine import TorchEngine

        if module is None:
            raise ModelError("the torch engine needs the PyTorch model (a .safetensors checkpoint), not an ONNX file")
        return TorchEngine(module, max_batch=max_batch, device=device, precision=precision, **options)
    if onnx_path is None:
        raise ModelError(f"the {backend} engine needs an ONNX model; create one with `vpd-stream export`")
    if backend == "onnxruntime":
        from .onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_path, max_batch=max_batch, device=device, precision=precision, **options)
    from .tensorrt_engine import TensorRTEngine

    return TensorRTEngine(onnx_path, max_batch=max_batch, device=device if device.startswith("cuda") else "cuda",
                          precision=precision, **options)


def run_chunked(engine: Engine, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a batch of any size through ``engine`` in pieces of at most ``engine.max_batch``."""
    total = int(next(iter(inputs.values())).shape[0])
    if total <= engine.max_batch:
        return engine.run(inputs)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, engine.max_batch):
        out = engine.run({k: v[start:start + engine.max_batch] for k, v in inputs.items()})
        for name, value in out.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values, axis=engine.batch_axis(name)) for name, values in parts.items()}


__all__ = ["BACKENDS", "Engine", "create_engine", "run_chunked"]
