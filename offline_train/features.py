"""Per-frame feature sequences for the heads: normalized 2D joints now, others later.

A feature set maps a clip to a (T, d) float32 sequence and says how to flip it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vpd_stream.errors import ConfigError

from .penn_action import PennClip
from vpd_stream.skeleton import flip_features, normalize_joints


@dataclass(frozen=True)
class FeatureSet:
    name: str
    dim: int
    extract: Callable[[PennClip], np.ndarray]  # clip -> (T, dim) float32
    flip: Callable[[np.ndarray], np.ndarray]  # (T, dim) -> (T, dim) horizontally flipped


def _pose2d(clip: PennClip) -> np.ndarray:
    return normalize_joints(clip.keypoints[..., :2])


FEATURE_SETS: dict[str, FeatureSet] = {
    "pose2d": FeatureSet("pose2d", 26, _pose2d, flip_features),
}


def get_feature_set(name: str) -> FeatureSet:
    if name not in FEATURE_SETS:
        raise ConfigError(f"unknown feature set '{name}'; available: {', '.join(sorted(FEATURE_SETS))}")
    return FEATURE_SETS[name]


def flip_for(dim: int) -> Callable[[np.ndarray], np.ndarray]:
    """The flip of a feature stream by its width (26 = pose joints; embeddings carry their own)."""
    if dim == 26:
        return flip_features
    raise ConfigError(f"no horizontal flip known for {dim}-d features; use pose2d (26-d)")
