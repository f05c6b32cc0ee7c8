"""Decoder D (training only): the student's embedding → [p_t, p_t − p_{t−1}].

VPD supplement: fully connected, two hidden layers of 128 units. D makes the embedding
carry motion as well as pose; it is dropped after training (the stream runs F alone).
"""
from __future__ import annotations

import torch
from torch import nn


class MotionDecoder(nn.Module):
    def __init__(self, dim: int, target_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * target_dim))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


class DistillNet(nn.Module):
    """F (+ D): the one module DDP wraps, so every forward goes through the wrapper.

    Without D (the ``--no-motion`` ablation) the student regresses p_t directly.
    """

    def __init__(self, student: nn.Module, decoder: MotionDecoder | None, channels_last: bool = False) -> None:
        super().__init__()
        self.student = student
        self.decoder = decoder
        self.channels_last = channels_last

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        x = self.student.normalize(rgb, flow)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        embedding = self.student.forward_normalized(x)
        return embedding if self.decoder is None else self.decoder(embedding)
