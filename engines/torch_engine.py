"""The PyTorch engine: the reference every other backend is compared with.

Runs any ``nn.Module`` whose ``forward`` takes the named inputs as keyword arguments.
Input and output names come from the module's ``input_names`` / ``output_names``
attributes when it has them, otherwise from ``forward``'s signature and ``("output",)``.
fp32 runs the module as is; bf16 and fp16 run it under autocast, so uint8 inputs, the
in-model normalization and numerically sensitive ops stay in fp32 (fp16 needs CUDA).

``freeze=True`` traces the module under that autocast on the first call and freezes it
(TorchScript): the casts of the weights to bf16 are folded into constants once (eager
autocast re-casts every weight on every call, one oneDNN reorder per convolution) and
BatchNorm folds into the convolutions. The CPU dispatch uses it for bf16.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Engine
from vpd_stream.errors import ModelError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, module: nn.Module, *, max_batch: int = 32, device: str = "cpu",
                 precision: str = "fp32", channels_last: bool = True, freeze: bool = False) -> None:
        super().__init__(max_batch=max_batch, device=device, precision=precision)
        if precision not in PRECISIONS:
            raise ModelError(f"the torch engine runs fp32, bf16 or fp16, not '{precision}'")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device '{device}' was asked for but PyTorch sees no CUDA GPU; use --device cpu")
        if precision == "fp16" and not device.startswith("cuda"):
            raise ModelError("fp16 on the torch engine needs a CUDA device; use bf16 or fp32 on the CPU")
        self._device = torch.device(device)
        self._dtype = PRECISIONS[precision]
        self.module = module.eval().to(self._device)
        if channels_last:
            # oneDNN (CPU) and cuDNN (GPU) both run convolutions faster in NHWC.
            self.module = self.module.to(memory_format=torch.channels_last)
        self._input_names = list(getattr(module, "input_names", None) or _forward_args(module))
        self._output_names = list(getattr(module, "output_names", None) or ("output",))
        self._freeze = freeze
        self._frozen: Any = None

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self._input_names if n not in inputs]
        if missing:
            raise ValueError(f"missing engine inputs {missing}; expected {self._input_names}")
        batch = _batch_size(inputs)
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} exceeds the engine's max_batch {self.max_batch}")
        tensors = {n: torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self._device, non_blocking=True)
                   for n in self._input_names}
        if self._freeze:
            return self._to_numpy(self._run_frozen(tensors))
        with torch.inference_mode(), self._autocast():
            out = self.module(**tensors)
        return self._to_numpy(out)

    def _run_frozen(self, tensors: dict[str, torch.Tensor]) -> Any:
        args = tuple(tensors[n] for n in self._input_names)
        if self._frozen is None:
            with torch.no_grad(), self._autocast():
                traced = torch.jit.trace(self.module, args, check_trace=False)
                self._frozen = torch.jit.freeze(traced.eval())
        with torch.no_grad():
            return self._frozen(*args)

    def _autocast(self) -> Any:
        if self.precision == "fp32":
            return torch.autocast(self._device.type, enabled=False)
        return torch.autocast(self._device.type, dtype=self._dtype)

    def _to_numpy(self, out: Any) -> dict[str, np.ndarray]:
        if isinstance(out, torch.Tensor):
            out = (out,)
        if isinstance(out, dict):
            items = [(k, out[k]) for k in self._output_names]
        else:
            if len(out) != len(self._output_names):
                raise ValueError(f"module returned {len(out)} outputs, expected {self._output_names}")
            items = list(zip(self._output_names, out))
        result = {}
        for name, tensor in items:
            if tensor.is_floating_point():
                tensor = tensor.float()
            result[name] = tensor.detach().cpu().contiguous().numpy()
        return result


def _forward_args(module: nn.Module) -> list[str]:
    params = inspect.signature(module.forward).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _batch_size(inputs: dict[str, np.ndarray]) -> int:
    sizes = {int(np.shape(v)[0]) for v in inputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"engine inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()
