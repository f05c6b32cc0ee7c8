"""Sequence heads over per-frame features (VPD supplement): the recognizer and the detector.

Recognizer (default, "bigru"): input dropout 0.2, 2-layer bidirectional GRU (hidden 128),
max-pool over time, BN-Dropout(0.5)-FC(256)-ReLU-BN-Dropout(0.5)-FC(classes).
Table S4 alternatives behind ``arch``: "cnn" (1D CNN), "bilstm", "bigru_attn", "bilstm_attn"
(attention pooling instead of max-pooling).
Detector: the same BiGRU emitting one binary logit per frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ARCHS = ("bigru", "bilstm", "bigru_attn", "bilstm_attn", "cnn")


@dataclass
class HeadConfig:
    kind: str  # "recognizer" or "detector"
    input_dim: int
    num_classes: int = 1
    arch: str = "bigru"
    hidden: int = 128
    layers: int = 2
    input_dropout: float = 0.2
    dropout: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


class SequenceEncoder(nn.Module):
    """(B, T, d) padded features + lengths -> (B, T, 2h) per-frame states."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.arch = cfg.arch
        self.in_drop = nn.Dropout(cfg.input_dropout)
        out = 2 * cfg.hidden
        if cfg.arch == "cnn":
            blocks = []
            ch = cfg.input_dim
            for _ in range(cfg.layers + 1):  # a few 1D conv blocks, kernel 5, same length
                blocks.append(nn.Sequential(nn.Conv1d(ch, out, 5, padding=2), nn.BatchNorm1d(out), nn.ReLU()))
                ch = out
            self.net: nn.Module = nn.ModuleList(blocks)
        else:
            rnn = nn.GRU if cfg.arch.startswith("bigru") else nn.LSTM
            self.net = rnn(cfg.input_dim, cfg.hidden, num_layers=cfg.layers,
                           batch_first=True, bidirectional=True)
        self.out_dim = out

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.in_drop(x)
        if self.arch == "cnn":
            # Zero the padding before every block so it acts like the conv's own zero padding.
            mask = _mask(lengths, x.shape[1])[:, None, :].to(x.dtype)
            y = x.transpose(1, 2)
            for block in cast(nn.ModuleList, self.net):
                y = block(y * mask)
            return (y * mask).transpose(1, 2)
        if bool((lengths == x.shape[1]).all()):  # no padding: the plain path is ~2x faster
            return self.net(x)[0]
        # Packing keeps padding out of the backward direction's state.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.net(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return y


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm1d(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
        nn.BatchNorm1d(hidden), nn.Dropout(dropout), nn.Linear(hidden, out_dim),
    )


class Recognizer(nn.Module):
    """Sequence -> class logits."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        if cfg.arch not in ARCHS:
            raise ValueError(f"unknown recognizer arch {cfg.arch!r}; choose one of {ARCHS}")
        self.cfg = cfg
        self.encoder = SequenceEncoder(cfg)
        h = self.encoder.out_dim
        self.attn = nn.Linear(h, 1) if cfg.arch.endswith("_attn") else None
        self.head = _mlp(h, h, cfg.num_classes, cfg.dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = self.encoder(x, lengths)
        mask = _mask(lengths, y.shape[1])
        if self.attn is not None:
            w = self.attn(y).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(dim=1)
            pooled = (w[..., None] * y).sum(1)
        else:
            pooled = y.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values
        return self.head(pooled)


class Detector(nn.Module):
    """Sequence -> one action logit per frame (B, T)."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SequenceEncoder(cfg)
        h = self.encoder.out_dim
        self.head = _mlp(h, h, 1, cfg.dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        y = self.encoder(x, lengths)
        b, t, h = y.shape
        return self.head(y.reshape(b * t, h)).reshape(b, t)


def build_head(cfg: HeadConfig) -> nn.Module:
    if cfg.kind == "recognizer":
        return Recognizer(cfg)
    if cfg.kind == "detector":
        return Detector(cfg)
    raise ValueError(f"unknown head kind {cfg.kind!r}")


def pad_batch(seqs: list, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, d) arrays -> (B, T_max, d) float tensor and (B,) lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    d = dim if dim is not None else seqs[0].shape[1]
    out = torch.zeros(len(seqs), int(lengths.max()), d)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.float32)
    return out, lengths
