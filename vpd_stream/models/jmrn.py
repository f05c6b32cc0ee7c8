"""JMRN: the joint-aware heatmap recognizer (Shah et al., WACV 2022, supplement Tables 1–3).

Input: (B, J, 3, H, W) aggregated per-joint heatmaps (see ``vpd_stream.heatmaps``).

- per-joint BatchNorm: one BatchNorm channel per (joint, time channel), so every joint
  keeps its own statistics;
- motion extractor shared by all joints: conv3×3 C→w0 s2, w0→w1, w1→w2 s2, w2→w3, ReLU
  (the paper's widths are 128, 128, 256, 256);
- a 1×1 compression of each joint's features to ``c_dim`` channels;
- the joint selector: 1×1 conv over all joints' features → average pool → FC → sigmoid,
  one weight per joint that rescales that joint's features;
- the classification module: 1×1 conv → ``cls_width`` (512 in the paper), conv3×3 s2 + BN,
  conv3×3 + BN, global average pool, FC → classes;
- per-joint projection heads (training only): a 2-layer MLP per joint over the joint's
  pooled features, onto the unit sphere, for the supervised joint-contrastive loss.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class JmrnConfig:
    num_classes: int
    num_joints: int = 13
    in_channels: int = 3  # time-encoding channels
    height: int = 64
    width: int = 64
    extractor: tuple[int, int, int, int] = (128, 128, 256, 256)
    extractor_bn: bool = True
    c_dim: int = 16
    selector_hidden: int = 64
    cls_width: int = 512
    proj_hidden: int = 64
    proj_dim: int = 32
    dropout: float = 0.5
    extra: dict = field(default_factory=dict)  # free-form provenance, not architecture

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extractor"] = list(self.extractor)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "JmrnConfig":
        d = dict(d)
        d["extractor"] = tuple(int(v) for v in d["extractor"])
        return cls(**d)


def _conv(cin: int, cout: int, stride: int = 1, bn: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


class JointProjection(nn.Module):
    """J independent 2-layer MLPs, evaluated together: (B, J, d) → (B, J, p) unit vectors."""

    def __init__(self, joints: int, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(joints, dim, hidden) / dim ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(joints, hidden))
        self.w2 = nn.Parameter(torch.randn(joints, hidden, out) / hidden ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(joints, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(torch.einsum("bjd,jdh->bjh", x, self.w1) + self.b1)
        return F.normalize(torch.einsum("bjh,jho->bjo", h, self.w2) + self.b2, dim=-1)


class JMRN(nn.Module):
    def __init__(self, cfg: JmrnConfig) -> None:
        super().__init__()
        self.cfg = cfg
        j, c = cfg.num_joints, cfg.in_channels
        w0, w1, w2, w3 = cfg.extractor
        # Cumulative statistics: heatmap variances are ~1e-3, so the default momentum would
        # need hundreds of steps to forget the initial running variance of 1.
        self.joint_bn = nn.BatchNorm2d(j * c, momentum=None)
        # BatchNorm after each extractor conv: without it the 4-layer stack trains very slowly here.
        bn = cfg.extractor_bn
        self.extractor = nn.Sequential(*_conv(c, w0, 2, bn), *_conv(w0, w1, 1, bn), *_conv(w1, w2, 2, bn),
                                       *_conv(w2, w3, 1, bn))
        self.compress = nn.Sequential(nn.Conv2d(w3, cfg.c_dim, 1), nn.ReLU(inplace=True))
        self.selector = nn.Sequential(
            nn.Conv2d(j * cfg.c_dim, cfg.selector_hidden, 1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cfg.selector_hidden, j),
        )
        cw = cfg.cls_width
        self.classifier = nn.Sequential(
            nn.Conv2d(j * cfg.c_dim, cw, 1), nn.ReLU(inplace=True),
            *_conv(cw, cw, 2, bn=True), *_conv(cw, cw, 1, bn=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(cw, cfg.num_classes),
        )
        self.projection = JointProjection(j, cfg.c_dim, cfg.proj_hidden, cfg.proj_dim)

    def joint_features(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, J, C, H, W) → (B, J, c_dim, h, w) per-joint compressed motion features."""
        b, j, c, h, w = maps.shape
        if j != self.cfg.num_joints or c != self.cfg.in_channels:
            raise ValueError(f"JMRN expects (B, {self.cfg.num_joints}, {self.cfg.in_channels}, H, W) heatmaps, got {tuple(maps.shape)}")
        x = self.joint_bn(maps.reshape(b, j * c, h, w)).reshape(b * j, c, h, w)
        f = self.compress(self.extractor(x))
        return f.reshape(b, j, *f.shape[1:])

    def forward(self, maps: torch.Tensor, return_projections: bool = False):
        feats = self.joint_features(maps)
        b, j, d, h, w = feats.shape
        flat = feats.reshape(b, j * d, h, w)
        weights = torch.sigmoid(self.selector(flat))  # (B, J)
        selected = (feats * weights[:, :, None, None, None]).reshape(b, j * d, h, w)
        logits = self.classifier(selected)
        if not return_projections:
            return logits
        return logits, self.projection(feats.mean(dim=(3, 4))), weights

    @torch.no_grad()
    def joint_weights(self, maps: torch.Tensor) -> torch.Tensor:
        feats = self.joint_features(maps)
        b, j, d, h, w = feats.shape
        return torch.sigmoid(self.selector(feats.reshape(b, j * d, h, w)))


@torch.no_grad()
def permute_joints(model: JMRN, perm) -> JMRN:
    """A copy of ``model`` that computes on ``maps`` what ``model`` computes on
    ``maps[:, perm]``: every joint-indexed parameter (the joint BatchNorm, the selector's
    input and output, the classifier's input, the per-joint projections) reordered.

    With ``skeleton.FLIP_PERM`` it turns a model trained on Penn Action's left/right names
    (the viewer's sides) into one for the person's own sides, the teacher's (issue 15).
    """
    import copy

    import numpy as np

    j = model.cfg.num_joints
    if sorted(np.asarray(perm).tolist()) != list(range(j)):
        raise ValueError(f"perm must be a permutation of {j} joints")
    inv = np.argsort(np.asarray(perm))  # new joint k is the old model's joint inv[k]
    out = copy.deepcopy(model)

    def blocks(size: int) -> torch.Tensor:  # channel index of (joint, sub) blocks of ``size``
        return torch.as_tensor((inv[:, None] * size + np.arange(size)[None]).reshape(-1))

    c, d = model.cfg.in_channels, model.cfg.c_dim
    bn = out.joint_bn
    for name in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(bn, name)
        t.copy_(t[blocks(c)])
    for conv in (out.selector[0], out.classifier[0]):
        w = conv.get_parameter("weight")
        w.copy_(w[:, blocks(d)])
    lin = out.selector[-1]
    for name in ("weight", "bias"):
        t = lin.get_parameter(name)
        t.copy_(t[torch.as_tensor(inv)])
    for t in out.projection.parameters():
        t.copy_(t[torch.as_tensor(inv)])
    return out.eval() if not model.training else out


# -- weights: safetensors + a JSON sidecar -------------------------------------------------

FORMAT = "vpd-stream/jmrn"
FORMAT_VERSION = 1


def save_jmrn(path, model: JMRN, heatmap: dict, classes: list[str], meta: dict | None = None):
    """Write ``path`` (.safetensors, fp16 floats to stay small) and ``path``.json."""
    from pathlib import Path

    from .weights_file import write_model_file

    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    sidecar = {"config": model.cfg.to_dict(), "heatmap": dict(heatmap), "classes": list(classes), **(meta or {})}
    return write_model_file(Path(path).with_suffix(".safetensors"), state, sidecar, FORMAT, FORMAT_VERSION)


def load_jmrn(path) -> tuple[JMRN, dict]:
    """Load weights and sidecar; every mismatch is a one-line ModelError. Eval mode, CPU."""
    from pathlib import Path

    from safetensors.torch import load_file

    from ..errors import ModelError
    from .weights_file import read_sidecar

    path = Path(path).with_suffix(".safetensors")
    side = path.with_suffix(".json")
    meta = read_sidecar(path, FORMAT, FORMAT_VERSION, "JMRN",
                        "train one with `vpd-stream train jmrn` or set the plugin's 'weights' option")
    try:
        cfg = JmrnConfig.from_dict(meta["config"])
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        model = JMRN(cfg)
        model.load_state_dict(state)
    except Exception as exc:  # safetensors, KeyError, shape mismatch: all mean a bad file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"JMRN model {path} does not match its sidecar ({first}); retrain it") from None
    if len(meta.get("classes", [])) != cfg.num_classes:
        raise ModelError(f"{side} lists {len(meta.get('classes', []))} classes for a {cfg.num_classes}-class model; retrain it")
    return model.eval(), meta
