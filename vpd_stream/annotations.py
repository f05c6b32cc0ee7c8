"""The annotation types stages exchange, keyed in ``Frame.annotations``.

Keys and their values (per-track values are dicts keyed by integer track id):

=============  ==================================================  ===============
key            value                                               provided by
=============  ==================================================  ===============
``tracks``     ``dict[int, Track]``                                tracker
``pose``       ``dict[int, Pose]``                                 pose
``crop``       ``dict[int, Crop]``                                 crop
``flow``       ``dict[int, np.ndarray]`` 2×128×128 uint8            flow
``embedding``  ``dict[int, Embedding]``                            student
``activation`` ``dict[int, float]`` latest per-frame activation     detector
``label``      ``dict[int, str]`` class of the events labelled      recognizer, jmrn
=============  ==================================================  ===============

Events (detections) travel in ``Frame.events`` / ``EndOfStream.events``: a plugin that
emits them provides ``Key.EVENTS``, one that labels them (the recognizer) requires it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Key(StrEnum):
    """What a plugin ``requires`` and ``provides``: the keys of ``Frame.annotations``, plus
    ``EVENTS`` (detections in ``Frame.events``). Members equal their strings, so a plugin
    may also write plain ``"tracks"``."""

    RGB = "rgb"  # the decoded frame itself (every chain starts with it)
    TRACKS = "tracks"
    POSE = "pose"
    CROP = "crop"
    FLOW = "flow"
    EMBEDDING = "embedding"
    ACTIVATION = "activation"
    LABEL = "label"  # track id -> the class a labeller gave this frame's events
    EVENTS = "events"


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in image pixels
    score: float  # detection confidence of the latest matched detection
    is_athlete: bool = False
    age: int = 0  # frames since the track was created
    reason: str = ""  # why the track is (or is not) an athlete, for the frame record
    side: str | None = None  # "near" / "far" (lower / upper athlete in the frame) when several athletes are followed


@dataclass
class Pose:
    keypoints: np.ndarray  # (13, 3) float32: x, y in image pixels, score in [0, 1]; COCO-13 order
    features: np.ndarray  # (26,) float32 VPD-normalized joints (see vpd_stream.skeleton)
    mean_score: float


@dataclass
class Crop:
    rgb: np.ndarray  # (128, 128, 3) uint8 crop of the current frame
    prev_rgb: np.ndarray  # (128, 128, 3) uint8 crop of the previous frame at the same square
    box: np.ndarray  # (4,) float32 square x1, y1, x2, y2 in image pixels (may exceed the image)


@dataclass
class Embedding:
    vector: np.ndarray  # (d,) float32
    flipped: np.ndarray  # (d,) float32 embedding of the horizontally flipped input


# Feature keys a head may consume -> the annotation they are computed from.
FEATURE_SOURCES = {"pose": "pose", "pose_box": "pose", "embedding": "embedding"}


def feature_vector(frame_annotations: dict, key: str, track_id: int) -> np.ndarray | None:
    """The per-frame feature a head consumes: normalized pose joints ("pose": the VPD 26-d;
    "pose_box": box-normalized, ``vpd_stream.skeleton.box_features``) or a VPD embedding."""
    if key == "pose_box":
        from .skeleton import box_features

        pose = frame_annotations.get("pose", {}).get(track_id)
        return None if pose is None else box_features(pose.keypoints)
    value = frame_annotations.get(key, {}).get(track_id)
    if value is None:
        return None
    if isinstance(value, Pose):
        return value.features
    if isinstance(value, Embedding):
        return value.vector
    return np.asarray(value, dtype=np.float32)
