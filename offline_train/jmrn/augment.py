"""Pose-aware augmentation (PAA) of aggregated joint heatmaps, plus the horizontal flip.

PAA moves whole joint maps, so the motion each map encodes is kept: a global translation
of all joints by up to β grid pixels, and a group-wise translation of the head, left arm,
right arm, left leg and right leg by up to γ each (β > γ keeps the body's structure; the
groups are whole limbs, so a limb never tears apart). One bilinear ``grid_sample`` call
moves every (example, joint) map at once; integer shifts are exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from vpd_stream.skeleton import FLIP_PERM, JOINT

# COCO-13 joint groups that move together (the hips go with their legs, the shoulders with their arms).
GROUPS: tuple[tuple[int, ...], ...] = (
    (JOINT["nose"],),
    (JOINT["left_shoulder"], JOINT["left_elbow"], JOINT["left_wrist"]),
    (JOINT["right_shoulder"], JOINT["right_elbow"], JOINT["right_wrist"]),
    (JOINT["left_hip"], JOINT["left_knee"], JOINT["left_ankle"]),
    (JOINT["right_hip"], JOINT["right_knee"], JOINT["right_ankle"]),
)


def _group_of_joint() -> torch.Tensor:
    out = torch.empty(13, dtype=torch.long)
    for g, joints in enumerate(GROUPS):
        out[list(joints)] = g
    return out


GROUP_OF_JOINT = _group_of_joint()


@dataclass(frozen=True)
class AugmentConfig:
    paa: bool = True
    beta: int = 6  # global translation, grid pixels (of 64)
    gamma: int = 2  # group-wise translation, grid pixels
    flip: bool = True  # random horizontal flip (left/right joints swapped)


def shift_maps(maps: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Translate (B, J, C, H, W) maps by per-(example, joint) shifts (B, J, 2) = (dx, dy) pixels, zero fill."""
    b, j, c, h, w = maps.shape
    theta = torch.zeros(b * j, 2, 3, dtype=maps.dtype, device=maps.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    # grid_sample reads the input at the output position minus the shift (normalized units).
    theta[:, 0, 2] = -2.0 * shift[..., 0].reshape(-1).to(maps.dtype) / w
    theta[:, 1, 2] = -2.0 * shift[..., 1].reshape(-1).to(maps.dtype) / h
    grid = F.affine_grid(theta, [b * j, c, h, w], align_corners=False)
    out = F.grid_sample(maps.reshape(b * j, c, h, w), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.reshape(b, j, c, h, w)


def paa_shifts(batch: int, beta: int, gamma: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 13, 2) integer shifts: one global per example plus one per joint group."""
    glob = torch.randint(-beta, beta + 1, (batch, 1, 2), generator=generator)
    group = torch.randint(-gamma, gamma + 1, (batch, len(GROUPS), 2), generator=generator)
    return (glob + group[:, GROUP_OF_JOINT]).float()


def flip_maps(maps: torch.Tensor) -> torch.Tensor:
    return maps[:, list(FLIP_PERM)].flip(-1)


def augment(maps: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of a batch of heatmaps."""
    out = maps
    if cfg.flip:
        which = torch.rand(len(maps), generator=generator) < 0.5
        if bool(which.any()):
            out = out.clone()
            out[which] = flip_maps(out[which])
    if cfg.paa and (cfg.beta > 0 or cfg.gamma > 0):
        out = shift_maps(out, paa_shifts(len(maps), cfg.beta, cfg.gamma, generator))
    return out
