"""Labelled per-frame feature sequences of any sport, from a corpus store or a pose folder.

``load_dataset(labels, store=..., poses=..., features=...)`` gives one ``ClipData`` per
labelled video: a (T, d) feature sequence over the video's frames (at the store's rate, or
the pose clip's), the flipped sequence where the features carry one (student
embeddings), and the label spans in those frames.

Feature specs (what a head records as its ``features``):

* ``pose`` — the 26-d normalized teacher joints. From a store: the ``pose`` column the
  stream's own pose plugin wrote (what the live detector and recognizer consume). From a
  pose folder: ``offline_train.features`` ``pose2d`` over the clip's keypoints (the same
  feature function; a score-0 joint is what that function makes of it).
* ``pose_box`` — the box-normalized joints (``vpd_stream.skeleton.box_features`` of the
  teacher's keypoints, as the live ``pose_box`` feature key; from a pose folder the
  ``pose2d_box`` feature set).
* ``embedding:FEATURES`` — the student embeddings ``vpd-stream embed`` wrote for the same
  store (``FEATURES/NAME.npz``, rows aligned with the store's rows); flipped views included.

One athlete per frame: the row of the video's longest track at that frame, else the row
with the highest mean joint score. Frames without a row hold the last feature (the first
ones take the first), as the live plugins hold the last pose.

Labels are in frames of the video as decoded (source frames); a store frame is in a span
when its source frame is, so spans survive the stream's resampling to 25 fps.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vpd_stream.errors import ConfigError, InputError

from .labels import LabelSet, Span, load_labels, resolve_spans


@dataclass
class ClipData:
    name: str
    features: np.ndarray  # (T, d) float32
    flipped: np.ndarray | None  # (T, d) the mirrored view's features, where they are no function of features
    fps: float
    source_index: np.ndarray  # (T,) source frame of each frame
    present: np.ndarray  # (T,) bool: the athlete had a feature at this frame (else held)
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, label) in these frames

    def __len__(self) -> int:
        return len(self.features)

    def frame_labels(self, actions: set[str] | None = None) -> np.ndarray:
        y = np.zeros(len(self), np.float32)
        for s, e, lab in self.spans:
            if actions is None or lab in actions:
                y[s:e + 1] = 1.0
        return y

    def intervals(self, actions: set[str] | None = None) -> list[tuple[int, int]]:
        return [(s, e) for s, e, lab in self.spans if actions is None or lab in actions]


@dataclass
class Dataset:
    clips: dict[str, ClipData]
    labels: LabelSet
    features: str  # "pose" or "embedding:FEATURES"
    kind: str  # "pose", "pose_box" (the plugins' feature keys) or "embedding"
    dim: int
    fps: float
    source: str  # "store:PATH" or "poses:PATH"
    feature_info: dict = field(default_factory=dict)

    @property
    def flip(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Feature-space flip (pose joints); None for embeddings (they carry ``flipped``)."""
        if self.kind in ("pose", "pose_box"):
            from vpd_stream.skeleton import flip_features

            return flip_features
        return None

    def spans_of(self, name: str) -> list[Span]:
        return [s for s in self.labels.spans if s.video == name]


def parse_features(spec: str) -> tuple[str, str | None]:
    """``pose`` -> ("pose", None); ``pose_box``; ``embedding:DIR`` -> ("embedding", DIR)."""
    spec = spec.strip()
    if spec in ("pose", "pose2d"):
        return "pose", None
    if spec in ("pose_box", "pose2d_box"):
        return "pose_box", None
    if spec.startswith("embedding:") and len(spec) > len("embedding:"):
        return "embedding", spec[len("embedding:"):]
    raise ConfigError(f"--features '{spec}': use 'pose', 'pose_box' or 'embedding:FEATURES' (the folder `vpd-stream embed` wrote)")


def _choose_rows(frames: np.ndarray, track_id: np.ndarray, score: np.ndarray, n: int) -> np.ndarray:
    """Row per frame index 0..n-1 (-1 = none): the longest track's row there, else the best-scored."""
    chosen = np.full(n, -1, np.int64)
    if not len(frames):
        return chosen
    ids, counts = np.unique(track_id, return_counts=True)
    length = dict(zip(ids.tolist(), counts.tolist()))
    key = [(length[t], float(s)) for t, s in zip(track_id.tolist(), score.tolist())]
    best: dict[int, tuple] = {}
    for r, f in enumerate(frames.tolist()):
        if 0 <= f < n and (f not in best or key[r] > best[f][0]):
            best[f] = (key[r], r)
    for f, (_, r) in best.items():
        chosen[f] = r
    return chosen


def _held(values: np.ndarray, chosen: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """values[chosen] with gaps holding the last (leading gaps the first); zeros if none."""
    present = chosen >= 0
    out = np.zeros((len(chosen), dim), np.float32)
    if not present.any():
        return out, present
    idx = np.where(present, np.arange(len(chosen)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.flatnonzero(present)[0])
    out[:] = values[chosen[idx]]
    return out, present


def _map_spans(spans: list[Span], source_index: np.ndarray, where: str) -> list[tuple[int, int, str]]:
    out = []
    for s in spans:
        inside = np.flatnonzero((source_index >= s.start) & (source_index <= s.end))
        if len(inside) == 0:  # shorter than a resampled frame: the nearest one
            inside = np.array([int(np.argmin(np.abs(source_index - 0.5 * (s.start + s.end))))])
        out.append((int(inside[0]), int(inside[-1]), s.label))
    return out


def _store_dataset(labels: LabelSet, store_path: str, kind: str, feat_dir: str | None) -> Dataset:
    from .corpus.store import open_store

    store = open_store(store_path)
    names = set(store.complete_videos())
    info: dict = {}
    emb_dir = None
    if kind == "embedding":
        emb_dir = Path(feat_dir)
        manifest = emb_dir / "features.json"
        if not manifest.is_file():
            raise InputError(f"{emb_dir} has no features.json; write it with `vpd-stream embed {store_path} "
                             f"--model STUDENT --out {emb_dir}`")
        info = json.loads(manifest.read_text(encoding="utf-8"))
    tables, fps_of, n_src = {}, {}, {}
    for name in sorted(names):
        with store.open(name) as v:
            ft = v.frames_table()
            attrs = v.attrs()
            tables[name] = (ft, {k: v.arrays[k] for k in ("frame", "track_id", "pose_score", "pose", "keypoints")})
            src_fps = float(attrs.get("source_fps") or v.fps)
            fps_of[name] = src_fps
            step = max(1, int(round(src_fps / v.fps))) if v.fps else 1
            n_src[name] = int(ft["source_index"].max()) + step if len(ft["source_index"]) else 0
            tables[name] += (v.fps,)
    resolved = resolve_spans(labels, n_src, fps_of)
    by_video = resolved.by_video()
    clips: dict[str, ClipData] = {}
    dim = 26 if kind != "embedding" else int(info.get("dim", 0))
    rate = None
    for name, spans in by_video.items():
        ft, arr, vfps = tables[name]
        n = len(ft["index"])
        chosen = _choose_rows(arr["frame"], arr["track_id"], arr["pose_score"], n)
        flipped = None
        if kind == "pose":
            feats, present = _held(arr["pose"], chosen, 26)
        elif kind == "pose_box":  # as the live feature_vector("pose_box"): box_features of the teacher's joints
            from vpd_stream.skeleton import box_features

            feats, present = _held(box_features(arr["keypoints"]) if len(arr["keypoints"]) else
                                   np.zeros((0, 26), np.float32), chosen, 26)
        else:
            f = emb_dir / f"{name}.npz"
            if not f.is_file():
                raise InputError(f"{f} is missing: the features in {emb_dir} do not cover video '{name}' of "
                                 f"{store_path}; rerun `vpd-stream embed`")
            with np.load(f) as e:
                emb, embf = e["embedding"], e["embedding_flipped"]
                if len(emb) != len(arr["frame"]) or not np.array_equal(e["frame"], arr["frame"]):
                    raise InputError(f"{f} does not match the store's rows of '{name}' (embedded from another "
                                     "store or an older prepare); rerun `vpd-stream embed`")
            feats, present = _held(emb, chosen, emb.shape[1])
            flipped, _ = _held(embf, chosen, emb.shape[1])
            dim = emb.shape[1]
        clips[name] = ClipData(name, feats, flipped, vfps, ft["source_index"], present,
                               _map_spans(spans, ft["source_index"], name))
        rate = vfps if rate is None else rate
    spec = kind if kind != "embedding" else f"embedding:{feat_dir}"
    return Dataset(clips, resolved, spec, kind, dim, float(rate or 0.0), f"store:{store_path}", info)


def _pose_dataset(labels: LabelSet, poses: str, kind: str) -> Dataset:
    if kind == "embedding":
        raise ConfigError("--poses gives keypoints only: use --features pose or pose_box (embeddings need --store)")
    from .features import get_feature_set
    from .keypoints import load_pose_dir

    clips_kp = load_pose_dir(poses, labels.videos())
    missing = [v for v in labels.videos() if v not in clips_kp]
    if missing:
        first = next(s for s in labels.spans if s.video == missing[0])
        raise InputError(f"{labels.path}:{first.line}: unknown video '{missing[0]}' (no {missing[0]}.npz in {poses})")
    resolved = resolve_spans(labels, {n: len(c) for n, c in clips_kp.items()}, {n: c.fps for n, c in clips_kp.items()})
    fs = get_feature_set("pose2d" if kind == "pose" else "pose2d_box")
    clips = {}
    rates = set()
    for name, spans in resolved.by_video().items():
        c = clips_kp[name]
        idx = np.arange(len(c))
        clips[name] = ClipData(name, fs.extract(c), None, c.fps, idx, c.keypoints[..., 2].sum(1) > 0,
                               [(s.start, s.end, s.label) for s in spans])
        rates.add(c.fps)
    return Dataset(clips, resolved, kind, kind, 26, float(max(rates)), f"poses:{poses}")


def load_dataset(labels: str | Path | LabelSet, *, store: str | None = None, poses: str | None = None,
                 features: str = "pose") -> Dataset:
    if (store is None) == (poses is None):
        raise ConfigError("give exactly one of --store STORE (from `vpd-stream prepare`) or --poses DIR (keypoint clips)")
    lab = labels if isinstance(labels, LabelSet) else load_labels(labels)
    kind, feat_dir = parse_features(features)
    if store is not None:
        return _store_dataset(lab, store, kind, feat_dir)
    return _pose_dataset(lab, poses, kind)
