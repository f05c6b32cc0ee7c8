"""The TensorRT engine: builds (or loads from the cache) an engine for an ONNX file and runs it.

TensorRT 10.x: a weakly typed network with the FP16 builder flag where the GPU has fast
fp16. TensorRT 11.x removed that flag: networks are strongly typed, so fp16 comes from an
fp16 ONNX (``vpd-stream export --precision fp16``) and the network keeps its own types.
One optimization profile covers batch 1 … max_batch. Serialized engines are cached under
``<cache>/tensorrt`` keyed by TensorRT version, GPU name + compute capability, the ONNX
sha256, the precision and the profile (``engines.cache.TensorRTKey``).

Device memory is owned by torch CUDA tensors (torch is a dependency already); inference
binds them by name with ``set_tensor_address`` and runs ``execute_async_v3`` on a stream.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import Engine
from .cache import TensorRTKey
from vpd_stream.errors import ModelError
from vpd_stream.models.weights_file import file_sha256

log = logging.getLogger(__name__)
TRT_PRECISIONS = ("fp32", "fp16")


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelError(f"TensorRT cannot be imported ({exc}); install vpd-stream[tensorrt] on a machine "
                         "with an NVIDIA GPU, or use --engine onnxruntime") from None
    return trt


def _cuda() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise ModelError("the TensorRT engine needs an NVIDIA GPU, and PyTorch sees none; use --engine onnxruntime")
    return torch


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def engine_key(onnx_path: str | Path, precision: str, profile: tuple[int, int, int]) -> TensorRTKey:
    trt = import_tensorrt()
    torch = _cuda()
    major, minor = torch.cuda.get_device_capability()
    return TensorRTKey(trt_version=str(trt.__version__), gpu_name=torch.cuda.get_device_name(),
                       compute_capability=f"{major}.{minor}", onnx_sha256=file_sha256(onnx_path),
                       precision=precision, profile=profile)


def build_engine(onnx_path: str | Path, *, precision: str = "fp16", max_batch: int = 32,
                 opt_batch: int | None = None, cache_root: str | Path | None = None,
                 workspace_bytes: int = 4 << 30, rebuild: bool = False) -> tuple[Path, TensorRTKey]:
    """Build the engine for ``onnx_path`` unless the cache holds it; return its path and key."""
    trt = import_tensorrt()
    if precision not in TRT_PRECISIONS:
        raise ModelError(f"the TensorRT engine builds fp32 or fp16, not '{precision}'")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX model {onnx_path} does not exist; create it with `vpd-stream export`")
    profile = (1, opt_batch or max_batch, max_batch)
    key = engine_key(onnx_path, precision, profile)
    path = key.path(cache_root)
    if path.is_file() and not rebuild:
        return path, key
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = trt_major(trt) >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        if strongly_typed:
            # 11.x: the types are the ONNX file's; an fp32 file would silently build fp32.
            if not _onnx_has_fp16(onnx_path):
                raise ModelError(f"TensorRT {trt.__version__} builds fp16 only from an fp16 ONNX; "
                                 f"run `vpd-stream export --precision fp16` and build that file")
        elif getattr(builder, "platform_has_fast_fp16", True):
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            log.warning("this GPU has no fast fp16; building fp32")
    opt = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)[1:]
        if any(d < 0 for d in dims):
            raise ModelError(f"{onnx_path}: input {tensor.name} has dynamic non-batch dims {tensor.shape}")
        opt.set_shape(tensor.name, (profile[0], *dims), (profile[1], *dims), (profile[2], *dims))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, path)  # atomic: a crash mid-write never leaves a half engine in the cache
    path.with_suffix(".json").write_text(json.dumps({**key.__dict__, "onnx": str(onnx_path)}, indent=2))
    return path, key


def _onnx_has_fp16(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, onnx_path: str | Path, *, max_batch: int = 32, device: str = "cuda",
                 precision: str = "fp16", opt_batch: int | None = None,
                 cache_root: str | Path | None = None) -> None:
        super().__init__(max_batch=max_batch, device=device, precision=precision)
        trt = import_tensorrt()
        torch = _cuda()
        self._torch = torch
        self.engine_path, self.key = build_engine(onnx_path, precision=precision, max_batch=max_batch,
                                                  opt_batch=opt_batch, cache_root=cache_root)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise ModelError(f"cached TensorRT engine {self.engine_path} cannot be loaded; delete it to rebuild")
        self._context = self._engine.create_execution_context()
        self._device = torch.device(device if device.startswith("cuda") else "cuda")
        self._stream = torch.cuda.Stream(device=self._device)
        self._in: dict[str, Any] = {}
        self._out: dict[str, Any] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = _torch_dtype(trt, torch, self._engine.get_tensor_dtype(name))
            dims = tuple(self._engine.get_tensor_shape(name))[1:]
            buf = torch.empty((max_batch, *dims), dtype=dtype, device=self._device)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._in if is_input else self._out)[name] = buf
        self.output_buffers = self._out  # device buffers (tests poison these)

    @property
    def input_names(self) -> list[str]:
        return list(self._in)

    @property
    def output_names(self) -> list[str]:
        return list(self._out)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        batch = None
        with torch.cuda.stream(self._stream):
            for name, buf in self._in.items():
                if name not in inputs:
                    raise ValueError(f"missing engine input '{name}'; expected {list(self._in)}")
                array = np.ascontiguousarray(inputs[name])
                n = array.shape[0]
                if batch is not None and n != batch:
                    raise ValueError(f"engine inputs disagree on the batch size: {n} vs {batch}")
                batch = n
                if n > self.max_batch:
                    raise ValueError(f"batch {n} exceeds the engine's max_batch {self.max_batch}")
                buf[:n].copy_(torch.from_numpy(array).to(buf.dtype), non_blocking=False)
                self._context.set_input_shape(name, tuple(buf[:n].shape))
                self._context.set_tensor_address(name, buf.data_ptr())
            for name, buf in self._out.items():
                self._context.set_tensor_address(name, buf.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise ModelError(f"TensorRT inference failed on {self.engine_path}")
            result = {name: buf[:batch].float().cpu().numpy() if buf.is_floating_point()
                      else buf[:batch].cpu().numpy() for name, buf in self._out.items()}
        self._stream.synchronize()
        return result

    def close(self) -> None:
        self._context = None
        self._engine = None


def _torch_dtype(trt: Any, torch: Any, dtype: Any) -> Any:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    for name, tdt in (("uint8", torch.uint8), ("int64", torch.int64), ("bfloat16", torch.bfloat16)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = tdt
    if dtype not in table:
        raise ModelError(f"TensorRT tensor type {dtype} is not supported by this engine wrapper")
    return table[dtype]
