"""Keypoint datasets without video: one file per clip of 13 COCO joints, plus a label CSV.

Format: a folder ``POSES/`` with one ``NAME.npz`` per clip (``NAME`` is the video name the
label CSV uses) holding

* ``keypoints`` — (T, 13, 3) float32: per frame and joint ``x, y, score``; x, y in any
  consistent unit (pixels of the source image are usual), the joints in COCO-13 order
  (nose, left/right shoulder, elbow, wrist, hip, knee, ankle — ``vpd_stream.skeleton``);
* ``fps`` — scalar float, the clip's frame rate.

**A missing joint** (not annotated, not visible, not detected) **is written as score 0**;
its x, y are kept as written (0 when unknown; Penn Action keeps its annotators' guesses)
and must be finite. A frame with nobody in it has every score 0. Scores
are otherwise the detector's confidence in [0, 1], or 1 for hand annotations. What a
score-0 joint becomes in the features is the feature function's business
(``vpd_stream.skeleton``), the same function the stream applies to the live teacher's
output, so poses from a file and poses from the stream become the same features.

``write_pose_clip`` / ``load_pose_dir`` read and write it; ``offline_train.penn_action``
converts Penn Action into it (visibility 0 -> score 0).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpd_stream.errors import InputError
from vpd_stream.skeleton import NUM_JOINTS


@dataclass
class PoseClip:
    name: str
    keypoints: np.ndarray  # (T, 13, 3) float32
    fps: float

    def __len__(self) -> int:
        return len(self.keypoints)


def check_keypoints(keypoints: np.ndarray, where: str) -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_JOINTS, 3) or len(kp) == 0:
        raise InputError(f"{where}: keypoints must be (T >= 1, {NUM_JOINTS}, 3) x, y, score; got {kp.shape}")
    if not np.isfinite(kp[..., 2]).all() or (kp[..., 2] < 0).any():
        raise InputError(f"{where}: joint scores must be finite and >= 0 (a missing joint has score 0)")
    if not np.isfinite(kp[..., :2]).all():
        raise InputError(f"{where}: x and y must be finite (write 0 for a missing joint, with score 0)")
    return kp


def write_pose_clip(folder: str | Path, name: str, keypoints: np.ndarray, fps: float) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kp = check_keypoints(keypoints, f"clip {name}")
    path = folder / f"{name}.npz"
    tmp = folder / f"{name}.tmp-{os.getpid()}.npz"
    np.savez(tmp, keypoints=kp, fps=np.float64(fps))
    os.replace(tmp, path)
    return path


def load_pose_clip(path: str | Path) -> PoseClip:
    path = Path(path)
    try:
        with np.load(path) as data:
            if "keypoints" not in data.files or "fps" not in data.files:
                raise InputError(f"{path}: a pose clip needs arrays 'keypoints' (T, 13, 3) and 'fps'")
            kp, fps = data["keypoints"], float(data["fps"])
    except InputError:
        raise
    except Exception as exc:  # numpy raises several types on a damaged file
        raise InputError(f"{path}: cannot read the pose clip ({exc})") from None
    if not fps > 0:
        raise InputError(f"{path}: fps must be positive, got {fps}")
    return PoseClip(path.stem, check_keypoints(kp, str(path)), fps)


def load_pose_dir(folder: str | Path, names: list[str] | None = None) -> dict[str, PoseClip]:
    """Clips of ``folder`` by name (all, or only ``names``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"pose folder {folder} does not exist")
    files = {p.stem: p for p in sorted(folder.glob("*.npz")) if ".tmp-" not in p.name}
    if not files:
        raise InputError(f"no pose clips (NAME.npz) in {folder}")
    wanted = list(files) if names is None else [n for n in names if n in files]
    return {n: load_pose_clip(files[n]) for n in wanted}
