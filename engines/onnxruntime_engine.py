"""The ONNX Runtime engine: the CPU default (CUDA execution provider when asked and present).

Graph optimizations are all on. Inputs carry the batch on axis 0 (the engine contract); each
output's batch axis is read from the ONNX graph: the axis whose symbolic dimension is the
inputs' batch symbol (``batch`` in our exports), so an output laid out as (d, batch) is
handled as such. Outputs whose shape is known apart from the batch axis are written through
IO binding into buffers preallocated for ``max_batch`` (no per-call allocation); ``run``
returns copies of what it filled, never views of those buffers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Engine
from vpd_stream.errors import ModelError

_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
             "tensor(double)": np.float64, "tensor(bool)": np.bool_}


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, model_path: str | Path, *, max_batch: int = 32, device: str = "cpu",
                 precision: str = "fp32", threads: int = 0, spin: bool = True, arena: bool = True) -> None:
        super().__init__(max_batch=max_batch, device=device, precision=precision)
        import onnxruntime as ort

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"ONNX model {self.model_path} does not exist; create it with `vpd-stream export`")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads  # 0 = one per physical core
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not spin:  # polite on a shared machine, at some latency cost
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The CPU arena keeps the largest activations ever run (a detector batch of 40 windows
        # of 250 frames: +115 MB, kept); without it each run's buffers are freed after it.
        opts.enable_cpu_mem_arena = arena
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError("device 'cuda' was asked for but this onnxruntime has no CUDA provider; "
                                 "install onnxruntime-gpu or use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.model_path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"ONNX model {self.model_path} cannot be loaded ({str(exc).splitlines()[0]}); re-export it") from None
        self._ort = ort
        self._inputs = {i.name: _NP_TYPES.get(i.type) for i in self.session.get_inputs()}
        self._outputs = self.session.get_outputs()
        self.output_batch_axes = output_batch_axes(self.session, self.model_path)
        # Preallocate outputs whose non-batch dims are static; others fall back to session.run.
        self.output_buffers: dict[str, np.ndarray] = {}
        for out in self._outputs:
            axis = self.output_batch_axes[out.name]
            dims = [d for i, d in enumerate(out.shape) if i != axis]
            if axis is not None and all(isinstance(d, int) for d in dims) and out.type in _NP_TYPES:
                dims.insert(axis, max_batch)
                self.output_buffers[out.name] = np.empty(dims, _NP_TYPES[out.type])
        self._bound = len(self.output_buffers) == len(self._outputs) and not device.startswith("cuda")

    def batch_axis(self, output: str) -> int:
        axis = self.output_batch_axes[output]
        return 0 if axis is None else axis

    def _filled(self, name: str, batch: int) -> np.ndarray:
        """The C-contiguous leading part of ``name``'s buffer shaped for ``batch`` items."""
        buf = self.output_buffers[name]
        axis = self.output_batch_axes[name]
        shape = buf.shape[:axis] + (batch,) + buf.shape[axis + 1:]
        return buf.reshape(-1)[:int(np.prod(shape))].reshape(shape)

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self._outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        batch = None
        for name, dtype in self._inputs.items():
            if name not in inputs:
                raise ValueError(f"missing engine input '{name}'; expected {list(self._inputs)}")
            array = np.ascontiguousarray(inputs[name], dtype=dtype)
            if batch is None:
                batch = array.shape[0]
            elif array.shape[0] != batch:
                raise ValueError(f"engine inputs disagree on the batch size: {array.shape[0]} vs {batch}")
            feeds[name] = array
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} exceeds the engine's max_batch {self.max_batch}")
        if not self._bound:
            values = self.session.run(None, feeds)
            return {o.name: v for o, v in zip(self._outputs, values)}
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        views = {name: self._filled(name, batch) for name in self.output_buffers}
        for name, view in views.items():  # leading elements of a C-contiguous buffer: shares memory
            binding.bind_output(name, "cpu", 0, view.dtype.type, list(view.shape), view.ctypes.data)
        self.session.run_with_iobinding(binding)
        return {name: view.copy() for name, view in views.items()}


def output_batch_axes(session, model_path: Path) -> dict[str, int | None]:
    """Each output's batch axis, from the graph's symbolic dimensions (None: not known).

    The batch symbols are those on axis 0 of the inputs. An output's batch axis is where one
    of them appears. A fully static output (a fixed-batch model) has it on axis 0. An output
    with other dynamic dimensions only (say a detector's number of boxes) has no known batch
    axis: it is not preallocated, and batches are joined on axis 0.
    """
    symbols = {i.shape[0] for i in session.get_inputs() if i.shape and isinstance(i.shape[0], str)}
    axes: dict[str, int | None] = {}
    for out in session.get_outputs():
        shape = list(out.shape or [])
        named = [i for i, d in enumerate(shape) if isinstance(d, str) and d in symbols]
        if len(named) > 1:
            raise ModelError(f"ONNX model {model_path}: output '{out.name}' of shape {shape} has the batch "
                             "dimension more than once; the engine cannot tell which axis indexes the batch")
        if named:
            axes[out.name] = named[0]
        elif shape and all(isinstance(d, int) for d in shape):
            axes[out.name] = 0
        else:
            axes[out.name] = None
    return axes
