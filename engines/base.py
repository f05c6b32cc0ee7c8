"""The one interface every inference backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Engine(ABC):
    """Runs one network: named numpy inputs in, named numpy outputs out.

    ``max_batch`` is the largest leading dimension ``run`` accepts; callers split larger
    batches. ``precision`` is one of fp32, bf16, fp16, int8. Inputs carry the batch on axis 0;
    outputs on ``batch_axis(name)`` (0 unless a backend knows better).
    """

    backend: str = ""

    def __init__(self, *, max_batch: int = 32, device: str = "cpu", precision: str = "fp32") -> None:
        self.max_batch = max_batch
        self.device = device
        self.precision = precision

    @property
    @abstractmethod
    def input_names(self) -> list[str]: ...

    @property
    @abstractmethod
    def output_names(self) -> list[str]: ...

    def batch_axis(self, output: str) -> int:
        """The axis of ``output`` that indexes the batch."""
        return 0

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        pass
