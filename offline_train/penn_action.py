"""Penn Action loader: the .mat labels as clips of COCO-13 joints, resampled to 25 fps.

Penn's 13 joints (head, l/r shoulder, l/r elbow, l/r wrist, l/r hip, l/r knee, l/r ankle)
are already in the COCO-13 order used everywhere in the project (head ~ nose).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpd_stream.errors import InputError
from vpd_stream.skeleton import FLIP_PERM

CLASSES = (
    "baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk",
    "golf_swing", "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat",
    "strum_guitar", "tennis_forehand", "tennis_serve",
)
VIEWS = ("front", "back", "left", "right")
SOURCE_FPS = 30.0


@dataclass
class PennClip:
    clip_id: str  # "0001"
    action: str
    label: int  # index into CLASSES
    view: str
    train: bool  # official split
    keypoints: np.ndarray  # (T, 13, 3) float32: x, y in pixels, visibility as score
    fps: float


def penn_anatomical(clip: PennClip) -> PennClip:
    """The clip with its left/right joints swapped to the person's own sides.

    Penn names left and right from the viewer (its "left shoulder" is left in the image in
    front views); the stream's teacher names the person's own sides."""
    return dataclasses.replace(clip, keypoints=np.asarray(clip.keypoints)[..., FLIP_PERM, :])


def resample_indices(num_frames: int, source_fps: float, target_fps: float) -> np.ndarray:
    """Source frame shown at each target-rate instant (nearest earlier-or-equal by time)."""
    if target_fps >= source_fps:
        return np.arange(num_frames)
    duration = num_frames / source_fps
    n_out = max(1, int(np.floor(duration * target_fps + 1e-9)))
    t = np.arange(n_out) / target_fps
    return np.minimum(np.floor(t * source_fps + 1e-6).astype(int), num_frames - 1)


def load_clip(path: Path, target_fps: float | None = 25.0) -> PennClip:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise InputError(f"Penn Action label file {path} cannot be read ({exc}); re-extract the dataset") from None
    x = np.asarray(mat["x"], dtype=np.float32)
    y = np.asarray(mat["y"], dtype=np.float32)
    vis = np.asarray(mat["visibility"], dtype=np.float32)
    # nframes is stored as uint8 in some files (overflows above 255): trust the arrays.
    kp = np.stack([x, y, vis], axis=-1)
    fps = SOURCE_FPS
    if target_fps is not None:
        kp = kp[resample_indices(len(kp), SOURCE_FPS, target_fps)]
        fps = min(target_fps, SOURCE_FPS)
    action = str(mat["action"][0])
    return PennClip(
        clip_id=path.stem, action=action, label=CLASSES.index(action),
        view=str(mat["pose"][0]), train=int(np.asarray(mat["train"]).squeeze()) == 1,
        keypoints=kp, fps=fps,
    )


def load_penn_action(root: Path, target_fps: float | None = 25.0, limit: int | None = None) -> list[PennClip]:
    """All clips under ``root/labels`` (or ``root`` itself), sorted by id."""
    root = Path(root)
    labels = root / "labels" if (root / "labels").is_dir() else root
    files = sorted(labels.glob("*.mat"))
    if not files:
        raise InputError(f"no Penn Action .mat files under {labels}; set --data to the penn_action folder")
    if limit is not None:
        files = files[:limit]
    return [load_clip(f, target_fps) for f in files]


def export_poses(root: Path, out: Path, target_fps: float | None = 25.0, limit: int | None = None) -> tuple[int, Path]:
    """Penn Action as a keypoint dataset (offline_train.keypoints) plus ``labels.csv``.

    The adapter of the generic path: each clip becomes ``OUT/ID.npz`` (x, y in pixels, the
    visibility flag as the joint score, so an invisible joint has score 0), resampled to
    ``target_fps`` as the Penn tables are; ``labels.csv`` has one trimmed-clip label per
    clip (``video,label``) and the columns ``split`` (train / test, the official split) and
    ``view``.
    """
    from .keypoints import write_pose_clip
    from .labels import Span, write_labels

    out = Path(out)
    clips = load_penn_action(root, target_fps, limit)
    spans = []
    for c in clips:
        kp = c.keypoints.copy()
        kp[..., 2] = (kp[..., 2] > 0).astype(np.float32)  # visibility 0 -> score 0 (1 otherwise)
        write_pose_clip(out, c.clip_id, kp, c.fps)
        spans.append(Span(c.clip_id, None, None, c.action, 0,
                          extra={"split": "train" if c.train else "test", "view": c.view}))
    return len(clips), write_labels(out / "labels.csv", spans, ("split", "view"))
