"""Distillation data: which rows supervise, the train/validation split, and batched reads.

* Weak-pose selection: a row supervises only when its teacher pose's mean joint score is
  ≥ ``threshold``; the motion half of the target (p_t − p_{t−1}) is used only when the
  same track's previous frame is in the store and also confident.
* Swap-aware motion (default on): the 2D teacher sometimes labels the left joints right
  between t−1 and t. When p_{t−1} with its left/right joints relabelled (FLIP_PERM, no x
  negation) is closer to p_t than p_{t−1} itself, the motion target is taken against the
  teacher's output for the *relabelled* previous pose, so Δp is motion, not a label flip
  (|Δp|² ≈ 3 where real motion at 60 fps is ~0.004). The relabelling is applied to the
  teacher's *input* (the stored pose and keypoints), so it is right for any teacher: for
  ``pose2d`` it is the joint permutation of p_{t−1}; for ``vipe`` it is the VIPE* embedding
  of the relabelled keypoints (an embedding cannot be permuted). The swap test itself is
  made on the stored 26-d pose, whatever the teacher. Pose targets are never changed.
* Split: 20 % of the supervising rows, chosen uniformly at random (seeded), are held out.
* Sampling: each epoch draws ``epoch_size`` training rows uniformly at random, from a
  generator seeded by (seed, epoch), so a resumed run sees the very same batches.
* Reading: ``FrameDataset.__getitems__`` fetches a whole batch, grouped by video, so the
  DataLoader makes one call per batch; HDF5 files open lazily in each loader worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from vpd_stream.errors import ConfigError, InputError
from vpd_stream.skeleton import FEATURE_DIM, FLIP_PERM, NUM_JOINTS, flip_features

from ..corpus.store import CorpusStore, VideoStore, open_store


@dataclass
class Targets:
    """Per supervising row: where it lives and what the teacher says."""

    video: np.ndarray  # (n,) int32 index into ``paths``
    row: np.ndarray  # (n,) int64 row in that video's file
    pose: np.ndarray  # (n, d) float32 p_t
    motion: np.ndarray  # (n, d) float32 p_t − p_{t−1} (zeros where unknown)
    pose_flip: np.ndarray  # (n, d) the teacher's output for the mirrored pose
    motion_flip: np.ndarray  # (n, d) its change from the previous frame
    motion_valid: np.ndarray  # (n,) bool
    prev_row: np.ndarray  # (n,) int64 row of p_{t−1} in the same video, or −1
    swapped: np.ndarray  # (n,) bool: the teacher swapped left and right between t−1 and t


class DistillData:
    """All supervising rows of a store, and their split."""

    def __init__(self, store: str | Path | CorpusStore, *, threshold: float = 0.5, val_fraction: float = 0.2,
                 seed: int = 0, teacher: str = "pose2d",
                 teacher_fn: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]] | None = None,
                 swap_aware_motion: bool = True) -> None:
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"the validation fraction must be in [0, 1), got {val_fraction}")
        self.store = store if isinstance(store, CorpusStore) else open_store(store)
        self.names = self.store.complete_videos()
        self.paths = [str(self.store.video_path(n)) for n in self.names]
        self.threshold = threshold
        self.teacher = teacher
        self.teacher_fn = teacher_fn or pose2d_teacher
        self.swap_aware_motion = swap_aware_motion
        self._rows: list[int] = []
        parts = [self._video_targets(i, path) for i, path in enumerate(self.paths)]
        self.targets = Targets(*(np.concatenate([getattr(p, f) for p in parts]) for f in Targets.__dataclass_fields__))
        self.total_rows = sum(self._rows)
        n = len(self.targets.row)
        if n < 2:
            raise InputError(f"{self.store.root}: only {n} frame(s) have a confident teacher pose (mean joint "
                             f"score >= {threshold}); prepare more video or lower --threshold")
        perm = np.random.default_rng(seed).permutation(n)
        n_val = int(round(val_fraction * n))
        if val_fraction > 0:
            n_val = min(max(n_val, 1), n - 1)
        self.val_idx = np.sort(perm[:n_val])
        self.train_idx = np.sort(perm[n_val:])

    def _video_targets(self, vi: int, path: str) -> Targets:
        with VideoStore(path) as video:
            a = video.arrays
        self._rows.append(len(a["pose"]))
        plain, mirrored = self.teacher_fn(a)
        pose = np.asarray(plain, dtype=np.float32)
        pose_f = np.asarray(mirrored, dtype=np.float32)
        score = a["pose_score"]
        ok = score >= self.threshold
        rows = np.flatnonzero(ok)
        prev = a["prev_row"][rows]
        has_prev = prev >= 0
        prev_ok = np.zeros(len(rows), bool)
        prev_ok[has_prev] = ok[prev[has_prev]]
        swapped = np.zeros(len(rows), bool)
        stored = np.asarray(a["pose"], np.float32)
        swapped[prev_ok] = teacher_swapped(stored[rows[prev_ok]], stored[prev[prev_ok]])
        motion = np.zeros((len(rows), pose.shape[1]), np.float32)
        motion[prev_ok] = pose[rows[prev_ok]] - pose[prev[prev_ok]]
        motion_f = np.zeros_like(motion)
        motion_f[prev_ok] = pose_f[rows[prev_ok]] - pose_f[prev[prev_ok]]
        if self.swap_aware_motion and swapped.any():
            # The teacher's output for the previous frames with left and right relabelled.
            plain_r, mirrored_r = self.teacher_fn(relabel_left_right(a))
            cur, before = rows[swapped], prev[swapped]
            motion[swapped] = pose[cur] - np.asarray(plain_r, np.float32)[before]
            motion_f[swapped] = pose_f[cur] - np.asarray(mirrored_r, np.float32)[before]
        return Targets(np.full(len(rows), vi, np.int32), rows.astype(np.int64), pose[rows], motion,
                       pose_f[rows], motion_f, prev_ok, np.where(prev_ok, prev, -1).astype(np.int64), swapped)

    @property
    def dim(self) -> int:
        return int(self.targets.pose.shape[1])

    def subset(self, idx: np.ndarray, direct: bool = True) -> "FrameDataset":
        return FrameDataset(self.paths, self.targets, idx, direct=direct)

    def target_mean(self) -> np.ndarray:
        """The trivial predictor: the training mean of [p_t, Δp] (Δp over rows that have one)."""
        t = self.targets
        idx = self.train_idx
        mv = idx[t.motion_valid[idx]]
        motion_mean = t.motion[mv].mean(0) if len(mv) else np.zeros(self.dim, np.float32)
        return np.concatenate([t.pose[idx].mean(0), motion_mean]).astype(np.float32)

    def rgb_stats(self, count: int = 512, seed: int = 0) -> tuple[list[float], list[float]]:
        """Per-channel mean / std of training crops in ±1 units (the student's input normalization)."""
        rng = np.random.default_rng(seed)
        pick = rng.choice(self.train_idx, size=min(count, len(self.train_idx)), replace=False)
        subset = self.subset(np.sort(pick))
        batch = subset.__getitems__(list(range(len(pick))))
        subset.close()
        x = batch["rgb"].numpy().astype(np.float64) / 127.5 - 1.0
        mean = x.reshape(-1, 3).mean(0)
        std = np.maximum(x.reshape(-1, 3).std(0), 1e-3)
        return [float(v) for v in mean], [float(v) for v in std]


class FrameDataset(torch.utils.data.Dataset):
    """Rows ``idx`` (into ``Targets``) → batches of uint8 images and float targets."""

    def __init__(self, paths: list[str], targets: Targets, idx: np.ndarray, direct: bool = True) -> None:
        self.paths = paths
        self.targets = targets
        self.idx = np.asarray(idx, dtype=np.int64)
        self.direct = direct  # False: image rows through h5py (for comparison; same values)
        self._open: dict[int, VideoStore] = {}

    def __len__(self) -> int:
        return len(self.idx)

    def __getstate__(self) -> dict[str, Any]:  # loader workers open their own files
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def _video(self, vi: int) -> VideoStore:
        if vi not in self._open:
            self._open[vi] = VideoStore(self.paths[vi], direct=self.direct)
        return self._open[vi]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([i])
        return {k: (v[0] if v is not None else None) for k, v in batch.items()}

    def __getitems__(self, items: list[int]) -> dict[str, torch.Tensor | None]:
        rows = self.idx[np.asarray(items, dtype=np.int64)]
        return self.read_rows(rows)

    def read_rows(self, rows: np.ndarray, prev: bool = False) -> dict[str, torch.Tensor | None]:
        """Images and targets of target rows ``rows``; ``prev`` reads each one's previous frame instead."""
        t = self.targets
        n = len(rows)
        videos = t.video[rows]
        file_rows = t.prev_row[rows] if prev else t.row[rows]
        # Rows are read in (video, file row) order, each straight into its batch position
        # (no gather copy). In a loader worker the batch lives in shared memory from the
        # start, so handing it to the trainer copies nothing either.
        order = np.lexsort((file_rows, videos))
        rgb_t, flow_t = _empty((n, 128, 128, 3)), _empty((n, 2, 128, 128))
        out_rgb, out_flow = rgb_t.numpy(), flow_t.numpy()
        mask_t: torch.Tensor | None = None
        sorted_videos = videos[order]
        bounds = np.flatnonzero(np.diff(sorted_videos)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n]):
            at = order[lo:hi]
            video = self._video(int(sorted_videos[lo]))
            if video.mask is not None and mask_t is None:
                mask_t = _empty((n, 128, 128))
                mask_t.fill_(255)  # rows of videos without a mask: all foreground
            out_mask = mask_t.numpy() if video.mask is not None else None
            video.images(file_rows[at], out=(out_rgb, out_flow, out_mask), at=at)
        target = np.concatenate([t.pose[rows], t.motion[rows]], axis=1)
        target_flipped = np.concatenate([t.pose_flip[rows], t.motion_flip[rows]], axis=1)
        return {"rgb": rgb_t, "flow": flow_t, "mask": mask_t,
                "target": torch.from_numpy(target), "target_flipped": torch.from_numpy(target_flipped),
                "motion_valid": torch.from_numpy(t.motion_valid[rows])}

    def close(self) -> None:
        for video in self._open.values():
            video.close()
        self._open.clear()


def _empty(shape: tuple[int, ...]) -> torch.Tensor:
    """A uint8 tensor; in a DataLoader worker, allocated in shared memory (as the loader's
    own collate does), so sending it to the trainer does not copy it into shared memory."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    numel = int(np.prod(shape))
    proto = torch.empty(0, dtype=torch.uint8)
    storage = proto._typed_storage()._new_shared(numel, device="cpu")
    return proto.new(storage).view(shape)


def whole_batch(batch: Any) -> Any:
    """The DataLoader's collate_fn: ``__getitems__`` already built the batch."""
    return batch


class RandomFrameSampler(torch.utils.data.Sampler[int]):
    """``epoch_size`` positions drawn uniformly from ``n`` (without replacement while they last).

    Seeded by (seed, epoch); under DDP each rank takes every ``world``-th draw.
    """

    def __init__(self, n: int, epoch_size: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.n, self.epoch_size, self.seed, self.rank, self.world = n, epoch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draws(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        parts, left = [], self.epoch_size
        while left > 0:
            take = min(left, self.n)
            parts.append(rng.permutation(self.n)[:take])
            left -= take
        return np.concatenate(parts)[self.rank::self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.draws().tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.epoch_size, self.world))


def teacher_swapped(pose: np.ndarray, prev_pose: np.ndarray) -> np.ndarray:
    """(n,) bool: p_t (n, 26) is closer to p_{t−1} with its left/right joints relabelled
    (FLIP_PERM, x kept) than to p_{t−1} itself — the teacher swapped sides, not the athlete."""
    p = np.asarray(pose, np.float32).reshape(-1, NUM_JOINTS, 2)
    q = np.asarray(prev_pose, np.float32).reshape(-1, NUM_JOINTS, 2)
    plain = ((p - q) ** 2).sum((1, 2))
    relabelled = ((p - q[:, FLIP_PERM]) ** 2).sum((1, 2))
    return relabelled < plain


def relabel_left_right(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A video's arrays with every row's left and right joints exchanged (no mirroring):
    the teacher's input as if it had labelled the sides the other way round."""
    out = dict(arrays)
    pose = np.asarray(arrays["pose"], np.float32)
    out["pose"] = pose.reshape(len(pose), NUM_JOINTS, 2)[:, FLIP_PERM].reshape(pose.shape)
    if "keypoints" in arrays:
        out["keypoints"] = np.asarray(arrays["keypoints"])[:, FLIP_PERM]
    return out


def pose2d_teacher(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The 2D pose teacher's targets: the stored 26-d VPD-normalized joints, and their mirror
    (left/right swapped, x negated: vpd_stream.skeleton.flip_features)."""
    pose = arrays["pose"].astype(np.float32)
    assert pose.shape[1] == FEATURE_DIM
    return pose, flip_features(pose)
