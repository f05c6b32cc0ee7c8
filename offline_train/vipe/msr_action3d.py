"""MSR Action3D real skeletons (Li, Zhang, Liu, CVPR-W 2010) as COCO-13 3D poses.

Files ``aAA_sSS_eEE_skeleton3D.txt``: per frame 20 lines ``x y z confidence`` in the
dataset's joint order. The coordinates are right-handed metres with +y up and +z away
from the sensor (a subject facing the sensor has their right hand at larger x — checked
on "high arm wave", performed with the right arm), the same handedness as
``canonical.py``, so no mirroring is needed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpd_stream.errors import InputError

# The dataset's 20 joints (0-based): 0 l shoulder, 1 r shoulder, 2 neck, 3 spine,
# 4 l hip, 5 r hip, 6 hip centre, 7 l elbow, 8 r elbow, 9 l wrist, 10 r wrist,
# 11 l hand, 12 r hand, 13 l knee, 14 r knee, 15 l ankle, 16 r ankle, 17 l foot,
# 18 r foot, 19 head.
MSR_TO_COCO13: tuple[int, ...] = (19, 0, 1, 7, 8, 9, 10, 4, 5, 13, 14, 15, 16)
NUM_MSR_JOINTS = 20
_NAME = re.compile(r"a(\d+)_s(\d+)_e(\d+)_skeleton3D\.txt$")


@dataclass
class MsrSequence:
    action: int  # 1..20
    subject: int  # 1..10
    take: int
    poses: np.ndarray  # (T, 13, 3) float32 metres, COCO-13 order


def _parse(path: Path) -> np.ndarray:
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"MSR Action3D file {path} cannot be read ({exc}); re-extract the dataset") from None
    if values.shape[1] != 4 or len(values) % NUM_MSR_JOINTS:
        raise InputError(f"MSR Action3D file {path} is not 20 lines of 'x y z c' per frame; re-extract it")
    frames = values.reshape(-1, NUM_MSR_JOINTS, 4)[..., :3]
    # Tracking failures show up as all-zero frames; keep only frames with a real torso.
    ok = np.abs(frames).sum(axis=(1, 2)) > 0
    return frames[ok][:, list(MSR_TO_COCO13)].astype(np.float32)


def load_msr_action3d(root: Path, subjects: tuple[int, ...] | None = None) -> list[MsrSequence]:
    """All sequences under ``root/skeleton_real3d`` (or ``root``), optionally some subjects."""
    root = Path(root)
    folder = root / "skeleton_real3d" if (root / "skeleton_real3d").is_dir() else root
    files = sorted(folder.glob("a*_s*_e*_skeleton3D.txt"))
    if not files:
        raise InputError(f"no MSR Action3D skeleton files under {folder}; point --msr at msr_action3d/")
    out = []
    for f in files:
        a, s, e = (int(g) for g in _NAME.search(f.name).groups())
        if subjects is not None and s not in subjects:
            continue
        poses = _parse(f)
        if len(poses):
            out.append(MsrSequence(action=a, subject=s, take=e, poses=poses))
    return out


class MsrPoses:
    """Random frames of MSR Action3D sequences: ``sample(rng, n)`` → (n, 13, 3)."""

    name = "msr"

    def __init__(self, sequences: list[MsrSequence]) -> None:
        if not sequences:
            raise InputError("no MSR Action3D sequences to train on (check --msr and the subject split)")
        self.poses = np.concatenate([s.poses for s in sequences]).astype(np.float64)

    def __len__(self) -> int:
        return len(self.poses)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.poses[rng.integers(0, len(self.poses), n)]
