"""Engines for a resolved student: torch, ONNX Runtime (exported once and cached) or TensorRT,
and the embedding of crops with their mirrors in one engine call."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vpd_stream.errors import ModelError
from vpd_stream.models.student_loading import StudentModel, flip_inputs

from . import create_engine, run_chunked
from .base import Engine

log = logging.getLogger(__name__)


def student_engine(student: StudentModel, backend: str, *, precision: str, max_batch: int,
                   device: str = "cpu", threads: int = 0, cache_root: str | None = None) -> Engine:
    """An engine for ``student``; ONNX exports are made once and cached."""
    if backend == "torch":
        if student.module is None:
            raise ModelError(f"the torch engine needs the .safetensors checkpoint, not {student.onnx_path}")
        if precision == "int8":
            raise ModelError("int8 runs on the onnxruntime engine; use --engine onnxruntime")
        return create_engine("torch", module=student.module, max_batch=max_batch, device=device,
                             precision=precision)
    onnx_path = student.onnx_path
    if backend == "onnxruntime":
        if onnx_path is not None:
            precision = student.onnx_precision or precision  # the file decides, not the option
        else:
            if precision == "int8":
                raise ModelError("int8 needs a calibrated model: run `vpd-stream export CHECKPOINT --precision "
                                 "int8 -o student-int8.onnx` and set model to that file")
            if precision != "fp32":
                raise ModelError(f"the onnxruntime engine runs fp32 or int8 on this build, not '{precision}'")
            onnx_path = cached_export(student, "fp32", cache_root)
        return create_engine("onnxruntime", onnx_path=onnx_path, max_batch=max_batch, device=device,
                             precision=precision, threads=threads)
    if onnx_path is None:
        from .tensorrt_engine import import_tensorrt, trt_major

        # TensorRT 11 is strongly typed: fp16 must already be in the ONNX file.
        export_precision = "fp16" if precision == "fp16" and trt_major(import_tensorrt()) >= 11 else "fp32"
        onnx_path = cached_export(student, export_precision, cache_root)
    return create_engine("tensorrt", onnx_path=onnx_path, max_batch=max_batch, device=device,
                         precision=precision, cache_root=cache_root)


def cached_export(student: StudentModel, precision: str, cache_root: str | None = None) -> Path:
    from .cache import onnx_cache_path
    from .export import DEFAULT_OPSET, export_student

    path = onnx_cache_path(student.weights_sha256, precision, DEFAULT_OPSET, cache_root)
    if not path.is_file():
        log.info("exporting the student to %s", path)
        export_student(student.module, path, precision=precision, sidecar=student.sidecar)
    return path


def embed_with_mirror(engines: list[Engine], rgb: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of (N, H, W, 3) crops + (N, 2, H, W) flow and of their mirrors, (N, d) each.

    Crops and mirrors go through each engine in one call (chunked at its max batch); with
    several engines (Concat-VPD) the outputs are stacked in order along the feature axis.
    """
    rgb_f, flow_f = flip_inputs(rgb, flow)
    inputs = {"rgb": np.concatenate([rgb, rgb_f]), "flow": np.concatenate([flow, flow_f])}
    outs = [np.asarray(run_chunked(e, inputs)["embedding"], dtype=np.float32) for e in engines]
    out = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)
    n = len(rgb)
    return out[:n], out[n:]
