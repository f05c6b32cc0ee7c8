"""Per-frame feature sequences for the heads: normalized 2D joints, and VIPE* embeddings.

All of them follow ``vpd_stream.skeleton``'s missing-joint rule (a joint with a score
below ``MIN_JOINT_SCORE`` — Penn's ``visibility == 0`` — is missing, whatever its stale
coordinates): ``pose2d`` is the VPD 26-d feature with missing joints at the hip centre,
``pose2d_box`` the box-normalized one (the heads' default), ``vipe`` the VIPE* embedding
fed its training convention (missing joints at the hip centre with score 0).
``pose2d_stale`` is the old VPD feature that uses the stale coordinates (for comparison).
``vipe_box`` joins the two: the unit VIPE* embedding and the unit box-normalized joints
weighted by ``JOIN_BOX_WEIGHT``, side by side (its own row in the tables, not "VIPE*").

A feature set maps a clip to a (T, d) float32 sequence and says how to flip it: either a
function of the features (``flip``: a signed permutation for 2D joints, an isometry) or,
for a learned embedding, a second extractor (``extract_flipped``: the embedding of the
mirrored pose), whose output is no function of the plain features. ``offline_train.nns``
uses the exact four-way flip search for the latter.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from vpd_stream.errors import ConfigError

from .penn_action import PennClip
from vpd_stream.skeleton import box_features, flip_features, normalize_joints, normalize_keypoints


@dataclass(frozen=True)
class FeatureSet:
    name: str
    dim: int
    extract: Callable[[PennClip], np.ndarray]  # clip -> (T, dim) float32
    flip: Callable[[np.ndarray], np.ndarray]  # (T, dim) -> (T, dim) horizontally flipped (isometric flips)
    extract_flipped: Callable[[PennClip], np.ndarray] | None = None  # clip -> (T, dim) of the mirrored clip

    def flipped(self, clip: PennClip) -> np.ndarray:
        """The features of the horizontally mirrored clip."""
        if self.extract_flipped is not None:
            return self.extract_flipped(clip)
        return self.flip(self.extract(clip))


def _pose2d(clip: PennClip) -> np.ndarray:
    return normalize_keypoints(clip.keypoints)


def _pose2d_box(clip: PennClip) -> np.ndarray:
    return box_features(clip.keypoints)


def _pose2d_stale(clip: PennClip) -> np.ndarray:
    return normalize_joints(clip.keypoints[..., :2])


@lru_cache(maxsize=1)
def _vipe_model():
    from vpd_stream.models.vipe import load_vipe

    return load_vipe()  # the committed default VIPE*


def _vipe(clip: PennClip) -> np.ndarray:
    from vpd_stream.models.vipe import embed_poses

    return embed_poses(_vipe_model(), clip.keypoints)  # Penn's visibility flags are the joint scores


def _vipe_flipped(clip: PennClip) -> np.ndarray:
    from vpd_stream.models.vipe import embed_poses

    return embed_poses(_vipe_model(), clip.keypoints, flip=True)


# The weight of the box-normalized joints beside the VIPE* embedding in ``vipe_box`` (both
# unit length first; DTW unit-normalizes the joined vector again). Chosen by leave-one-out
# NNS-DTW on the training clips (offline_train/vipe/penn_probe.py --loo), not on the test set.
JOIN_BOX_WEIGHT = 0.5


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def join_features(embedding: np.ndarray, box: np.ndarray, weight: float = JOIN_BOX_WEIGHT) -> np.ndarray:
    """(T, d) embedding and (T, 26) box-normalized joints → (T, d + 26) joined feature."""
    return np.concatenate([_unit(embedding), weight * _unit(box)], axis=-1).astype(np.float32)


def _vipe_box(clip: PennClip) -> np.ndarray:
    return join_features(_vipe(clip), box_features(clip.keypoints))


def _vipe_box_flipped(clip: PennClip) -> np.ndarray:
    return join_features(_vipe_flipped(clip), flip_features(box_features(clip.keypoints)))


def _no_feature_flip(features: np.ndarray) -> np.ndarray:
    raise ConfigError(f"{features.shape[-1]}-d VIPE* features have no feature-space flip: the flipped sequence is "
                      "the embedding of the mirrored pose (FeatureSet.flipped / offline_train.nns.feature_set_costs)")


FEATURE_SETS: dict[str, FeatureSet] = {
    "pose2d": FeatureSet("pose2d", 26, _pose2d, flip_features),
    "pose2d_box": FeatureSet("pose2d_box", 26, _pose2d_box, flip_features),
    "pose2d_stale": FeatureSet("pose2d_stale", 26, _pose2d_stale, flip_features),
    "vipe": FeatureSet("vipe", 32, _vipe, _no_feature_flip, _vipe_flipped),
    "vipe_box": FeatureSet("vipe_box", 32 + 26, _vipe_box, _no_feature_flip, _vipe_box_flipped),
}


# The stream's feature key (vpd_stream.annotations.FEATURE_SOURCES) a head trained on each set consumes.
STREAM_FEATURES = {"pose2d": "pose", "pose2d_box": "pose_box", "pose2d_stale": "pose", "vipe": "embedding",
                   "vipe_box": "embedding"}
DESCRIPTIONS = {
    "pose2d": "26-d VPD-normalized 2D joints, missing joints at the hip centre",
    "pose2d_box": "26-d box-normalized 2D joints (centre: mean of the present joints; scale: their box's "
                  "larger side), missing joints at the centre",
    "pose2d_stale": "26-d VPD-normalized 2D joints with Penn's stale invisible-joint coordinates (the old feature)",
    "vipe": "32-d VIPE* embedding, missing joints as its training convention (score 0; at the centre of its "
            "normalization)",
    "vipe_box": "the VIPE* embedding joined with the box-normalized 2D joints (both unit length, the joints weighted "
                "by JOIN_BOX_WEIGHT)",
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
