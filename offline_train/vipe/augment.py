"""Pose-space augmentation of real 3D skeletons (MSR Action3D): new poses from recorded ones.

MSR Action3D has 20 standing gestures of 10 people; Penn Action has pitches, squats,
push-ups and swings. Three operations make more varied, still anatomical, poses from it:

* **mixing**: the upper body (nose, shoulders, arms) of one frame on the lower body (hips,
  legs) of another, both canonicalized first (hip-centred, facing +z), so they meet at the
  hips facing one way;
* **limb-angle jitter**: each arm and leg turned about its root joint (shoulder, hip) and
  its forearm / shin about the elbow / knee by a random rotation (angle ~ N(0, sigma));
* **bone-length variation**: each limb bone scaled by U(1 - j, 1 + j), the chain kept.

Each operation is applied to a pose with its own probability; the result keeps the body
frame of ``canonical.py`` (+y up), turned to a random heading.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpd_stream.skeleton import JOINT

from .canonical import canonicalize

UPPER = (JOINT["nose"], JOINT["left_shoulder"], JOINT["right_shoulder"], JOINT["left_elbow"],
         JOINT["right_elbow"], JOINT["left_wrist"], JOINT["right_wrist"])
# (root, middle, end) of every limb
LIMBS = tuple((JOINT[f"{s}_{a}"], JOINT[f"{s}_{b}"], JOINT[f"{s}_{c}"])
              for s in ("left", "right") for a, b, c in (("shoulder", "elbow", "wrist"), ("hip", "knee", "ankle")))


@dataclass
class PoseAugmentConfig:
    mix_prob: float = 0.0  # upper body of one pose on the lower body of another
    jitter_prob: float = 0.0  # limb-angle jitter
    jitter_deg: float = 20.0
    length_prob: float = 0.0  # bone-length variation
    length_jitter: float = 0.15

    @property
    def active(self) -> bool:
        return self.mix_prob > 0 or self.jitter_prob > 0 or self.length_prob > 0


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(n, 3) unit axes, (n,) radians → (n, 3, 3) rotations (Rodrigues)."""
    k = np.zeros((len(axis), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k[:, 1, 0], k[:, 2, 0], k[:, 2, 1] = axis[:, 2], -axis[:, 1], axis[:, 0]
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3)[None] + s * k + (1 - c) * (k @ k)


def _random_rotations(rng: np.random.Generator, n: int, sigma_deg: float) -> np.ndarray:
    axis = rng.normal(size=(n, 3))
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-9)
    return _axis_angle(axis, np.radians(rng.normal(0.0, sigma_deg, n)))


def _rot(points: np.ndarray, pivot: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nj->ni", r, points - pivot) + pivot


def augment_poses(poses: np.ndarray, rng: np.random.Generator, cfg: PoseAugmentConfig) -> np.ndarray:
    """(n, 13, 3) poses → (n, 13, 3) augmented poses (canonical frame, random heading)."""
    p = canonicalize(poses)[:, :13].copy()  # hip-centred, facing +z
    n = len(p)
    if cfg.mix_prob > 0:
        mix = np.flatnonzero(rng.random(n) < cfg.mix_prob)
        if len(mix):
            donor = p[rng.integers(0, n, len(mix))]
            upper = np.array(UPPER)
            p[np.ix_(mix, upper)] = donor[:, upper]
    if cfg.length_prob > 0:
        sel = rng.random(n) < cfg.length_prob
        for root, mid, end in LIMBS:
            s1 = np.where(sel, rng.uniform(1 - cfg.length_jitter, 1 + cfg.length_jitter, n), 1.0)[:, None]
            s2 = np.where(sel, rng.uniform(1 - cfg.length_jitter, 1 + cfg.length_jitter, n), 1.0)[:, None]
            upper = p[:, mid] - p[:, root]
            lower = p[:, end] - p[:, mid]
            p[:, mid] = p[:, root] + s1 * upper
            p[:, end] = p[:, mid] + s2 * lower
    if cfg.jitter_prob > 0:
        sel = rng.random(n) < cfg.jitter_prob
        eye = np.broadcast_to(np.eye(3), (n, 3, 3))
        for root, mid, end in LIMBS:
            r1 = np.where(sel[:, None, None], _random_rotations(rng, n, cfg.jitter_deg), eye)
            p[:, mid] = _rot(p[:, mid], p[:, root], r1)
            p[:, end] = _rot(p[:, end], p[:, root], r1)
            r2 = np.where(sel[:, None, None], _random_rotations(rng, n, cfg.jitter_deg), eye)
            p[:, end] = _rot(p[:, end], p[:, mid], r2)
    yaw = rng.uniform(-np.pi, np.pi, n)
    c, s = np.cos(yaw), np.sin(yaw)
    r = np.zeros((n, 3, 3))
    r[:, 0, 0], r[:, 0, 2], r[:, 1, 1], r[:, 2, 0], r[:, 2, 2] = c, s, 1.0, -s, c
    return np.einsum("nij,nkj->nki", r, p)


class AugmentedPoses:
    """A pose source whose samples pass through ``augment_poses``."""

    def __init__(self, source, cfg: PoseAugmentConfig) -> None:
        self.source = source
        self.cfg = cfg
        self.name = f"{source.name}+augment"

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return augment_poses(self.source.sample(rng, n), rng, self.cfg)
