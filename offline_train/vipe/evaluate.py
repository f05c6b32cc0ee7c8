"""Evaluate VIPE* against normalized 2D joints: Penn Action and the four lunge cameras.

Penn Action (same protocol, splits and functions as offline_train/evaluate_penn.py):
NNS-DTW top-1 with the full training set, few-shot NNS-DTW on the fixed splits, retrieval
P@k, and cross-view retrieval (queries: test clips of one view; corpus: train clips of the
other views). One cost matrix (test × train, lowest over every flip combination) per
feature set gives all of them.

Flips: as in offline_train/nns.py, the cost of a pair is the lowest over the four
combinations of (q | flip q) × (x | flip x). For normalized joints the flip is an isometry,
so (q, x) and (flip q, x) already give it exactly; for VIPE* the flipped sequence is the
embedding of the mirrored poses (``embed_poses(..., flip=True)``), not a function of the
embedding, so all four combinations are computed (``FlipCosts.best``). The two-way
figure (``best_query_flip``: the lower of (q, x) and (flip q, x)) is kept for comparison.

Lunges: the four synchronised cameras see the same instant; a view-invariant feature puts
the four views of an instant closer together than two instants of one view.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from offline_train.fewshot import KS, NUM_SPLITS, penn_splits
from offline_train.penn_action import VIEWS, PennClip, load_penn_action
from vpd_stream.skeleton import flip_features, normalize_joints
from offline_train.retrieval import precision_at_k
from vpd_stream.dtw import DtwIndex
from vpd_stream.errors import InputError
from vpd_stream.models.vipe import Vipe, embed_poses

PAPER = {"VIPE* (Human3.6M), paper": 98.2, "VIPE* (Human3.6M + synthetic 3D), paper": 98.6,
         "Pr-VIPE (best), paper": 98.4}


@dataclass
class SeqFeatures:
    """Per-clip (T, d) features and their horizontally flipped counterparts."""

    name: str
    seqs: list[np.ndarray]
    flipped: list[np.ndarray]
    isometric_flip: bool = False  # flip is a signed permutation of the features (2D joints)


def pose2d_sequences(clips: list[PennClip]) -> SeqFeatures:
    seqs = [normalize_joints(c.keypoints[..., :2]) for c in clips]
    return SeqFeatures("pose2d", seqs, [flip_features(s) for s in seqs], isometric_flip=True)


def vipe_sequences(model: Vipe, clips: list[PennClip], name: str = "vipe",
                   use_visibility: bool = True) -> SeqFeatures:
    """Embed every frame; Penn's visibility flags are the joint scores (or all 1)."""
    kps = [c.keypoints if use_visibility else c.keypoints[..., :2] for c in clips]
    lengths = [len(k) for k in kps]
    flat = np.concatenate(kps)
    emb, emb_f = embed_poses(model, flat), embed_poses(model, flat, flip=True)
    cuts = np.cumsum(lengths)[:-1]
    return SeqFeatures(name, np.split(emb, cuts), np.split(emb_f, cuts))


@dataclass
class FlipCosts:
    plain: np.ndarray  # (Q, N) cost(q, x)
    best: np.ndarray  # (Q, N) lowest over (q | flip q) × (x | flip x)
    best_query_flip: np.ndarray | None = None  # (Q, N) lower of cost(q, x) and cost(flip q, x)


def flip_costs(queries: SeqFeatures, index: SeqFeatures, cache: Path | None = None) -> FlipCosts:
    """DTW costs of every query against every index clip; cached in ``cache`` (.npz).

    The four-way minimum needs the index's flipped sequences unless the flip is an
    isometry; without them (``index.flipped`` empty) ``best`` is the two-way figure. A
    cache written by the two-way version (no ``protocol``) is completed, not recomputed.
    """
    exact = not (queries.isometric_flip and index.isometric_flip) and len(index.flipped) == len(index.seqs)
    protocol = "flip4" if exact else "flip2"
    z = dict(np.load(cache)) if cache is not None and cache.is_file() else {}
    if z and str(z.get("protocol", "flip2")) == protocol:
        return FlipCosts(plain=z["plain"], best=z["best"], best_query_flip=z.get("best_query_flip", z["best"]))
    if z:  # a two-way cache: (q, x) and (flip q, x) are in it
        plain, two = z["plain"], z.get("best_query_flip", z["best"])
    else:
        idx = DtwIndex(index.seqs)
        plain = idx.cost_matrix(queries.seqs)
        two = np.minimum(plain, idx.cost_matrix(queries.flipped))
    best = two
    if exact:
        mirrored = DtwIndex(index.flipped).cost_matrix(list(queries.seqs) + list(queries.flipped))
        q = len(queries.seqs)
        best = np.minimum.reduce([two, mirrored[:q], mirrored[q:]])
    costs = FlipCosts(plain=plain, best=best, best_query_flip=two)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, plain=plain, best=best, best_query_flip=two, protocol=protocol)
    return costs


@dataclass
class PennResult:
    name: str
    nns_top1: float
    nns_top1_noflip: float
    nns_top1_query_flip: float  # the two-way search: lower of (q, x) and (flip q, x)
    fewshot: dict[int, list[float]]  # k -> top-1 per split
    retrieval: dict[int, float]
    cross_view: dict[str, tuple[int, dict[int, float]]]  # query view -> (queries, P@k)
    cross_view_noflip: dict[str, tuple[int, dict[int, float]]]
    seconds: float


def _cross_view(costs: np.ndarray, yte, ytr, vte, vtr) -> dict[str, tuple[int, dict[int, float]]]:
    out = {}
    for v in VIEWS:
        q, idx = vte == v, vtr != v
        if q.any() and idx.any():
            out[v] = (int(q.sum()), precision_at_k(costs[q][:, idx], yte[q], ytr[idx]))
    return out


def mean_cross_view(cv: dict[str, tuple[int, dict[int, float]]], k: int) -> float | None:
    """Query-weighted mean P@k over the four query views."""
    total = sum(n for n, _ in cv.values())
    if any(k not in p for _, p in cv.values()):
        return None  # a corpus smaller than k
    return sum(n * p[k] for n, p in cv.values()) / total


def penn_evaluate(train: list[PennClip], test: list[PennClip], tr: SeqFeatures, te: SeqFeatures,
                  splits: dict[str, list[list[str]]], ks: tuple[int, ...] = KS,
                  n_splits: int = NUM_SPLITS, cache: Path | None = None) -> PennResult:
    t0 = time.perf_counter()
    costs = flip_costs(te, tr, cache)
    ytr = np.array([c.label for c in train])
    yte = np.array([c.label for c in test])
    vtr = np.array([c.view for c in train])
    vte = np.array([c.view for c in test])
    pos = {c.clip_id: i for i, c in enumerate(train)}
    fewshot = {}
    for k in ks:
        accs = []
        for ids in splits[str(k)][:n_splits]:
            cols = np.array([pos[i] for i in ids if i in pos])
            accs.append(float((ytr[cols][np.argmin(costs.best[:, cols], axis=1)] == yte).mean()))
        fewshot[k] = accs
    return PennResult(
        name=te.name,
        nns_top1=float((ytr[np.argmin(costs.best, axis=1)] == yte).mean()),
        nns_top1_noflip=float((ytr[np.argmin(costs.plain, axis=1)] == yte).mean()),
        nns_top1_query_flip=float((ytr[np.argmin(costs.best_query_flip, axis=1)] == yte).mean()),
        fewshot=fewshot,
        retrieval=precision_at_k(costs.best, yte, ytr),
        cross_view=_cross_view(costs.best, yte, ytr, vte, vtr),
        cross_view_noflip=_cross_view(costs.plain, yte, ytr, vte, vtr),
        seconds=time.perf_counter() - t0,
    )


def load_penn(data: Path, subset: int = 1) -> tuple[list[PennClip], list[PennClip], dict]:
    """Official split; ``subset`` > 1 keeps every subset-th test clip (smoke runs only)."""
    clips = load_penn_action(data)
    train = [c for c in clips if c.train]
    test = [c for c in clips if not c.train][::subset]
    splits = penn_splits([c.clip_id for c in train], [c.label for c in train])
    return train, test, splits


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def penn_markdown(results: list[PennResult], n_train: int, n_test: int) -> str:
    ks = sorted(results[0].fewshot)
    lines = [f"Penn Action, hand-annotated 2D poses at 25 fps, official split: {n_train} train / {n_test} test "
             "clips. NNS-DTW: symmetricP2 on unit-normalized per-frame features, lowest cost over "
             "(q | flipped q) × (x | flipped x), the flipped sequence of an embedding being the embedding of "
             "the mirrored poses (query flip only: lower of (q, x) and (flipped q, x), the same for 2D joints; "
             "no-flip: the clips as they are).", "",
             "#### NNS-DTW top-1, full training set", "",
             "| features | top-1 (%) | top-1, query flip only (%) | top-1 without flips (%) |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} (this run) | {_pct(r.nns_top1)} | {_pct(r.nns_top1_query_flip)} | "
                     f"{_pct(r.nns_top1_noflip)} |")
    for name, v in PAPER.items():
        lines.append(f"| {name} | {v} | | |")
    lines += ["", "#### Few-shot NNS-DTW top-1 (%, mean ± std over the fixed splits in offline_train/splits/)", "",
              "| features | " + " | ".join(f"k={k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(
            f"{100 * np.mean(r.fewshot[k]):.1f} ± {100 * np.std(r.fewshot[k]):.1f}" for k in ks) + " |")
    lines += ["", "#### Retrieval (queries: test clips; corpus: all train clips)", "",
              "| features | P@1 | P@10 | P@50 |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(_pct(r.retrieval.get(k)) for k in (1, 10, 50)) + " |")
    lines += ["", "#### Cross-view retrieval (queries: test clips of one view; corpus: train clips of the "
              "other three views)", "",
              "| features | flip search | " + " | ".join(f"{v} P@1" for v in VIEWS) + " | mean P@1 | mean P@10 | mean P@50 |",
              "|---|---|" + "---|" * (len(VIEWS) + 3)]
    for flips in (True, False):
        for r in results:
            cv = r.cross_view if flips else r.cross_view_noflip
            lines.append(f"| {r.name} | {'four-way' if flips else 'none'} | "
                         + " | ".join(_pct(cv[v][1][1]) if v in cv else "–" for v in VIEWS) + " | "
                         + " | ".join(_pct(mean_cross_view(cv, k)) for k in (1, 10, 50)) + " |")
    return "\n".join(lines) + "\n"


# --- lunges: four synchronised cameras ------------------------------------------------

LUNGE_FILES = tuple(f"lunge_cam0{i}.mp4" for i in range(1, 5))


def lunge_poses(videos_dir: Path, cache: Path | None = None,
                log: Callable[[str], None] = print) -> np.ndarray:
    """(4, T, 13, 3) BlazePose keypoints in pixels (NaN where no person was found).

    BlazePose (the pose plugin's model, complexity 1, static-image mode) on each full
    frame; cached in ``cache`` (an .npz) because it is the slow part.
    """
    if cache is not None and cache.is_file():
        return np.load(cache)["poses"]
    import av

    from plugins.pose import BlazePose

    est = BlazePose()
    per_cam = []
    try:
        for name in LUNGE_FILES:
            path = videos_dir / name
            if not path.is_file():
                raise InputError(f"lunge video {path} not found; point --videos at the folder with lunge_cam0*.mp4")
            out = []
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    rgb = frame.to_ndarray(format="rgb24")
                    kp = est.estimate(rgb)
                    if kp is None:
                        out.append(np.full((13, 3), np.nan, np.float32))
                    else:
                        h, w = rgb.shape[:2]
                        out.append(kp * np.array([w, h, 1.0], np.float32))
            log(f"{name}: {len(out)} frames, {sum(np.isfinite(o[0, 0]) for o in out)} with a pose")
            per_cam.append(np.stack(out))
    finally:
        est.close()
    t = min(len(p) for p in per_cam)
    poses = np.stack([p[:t] for p in per_cam])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, poses=poses)
    return poses


@dataclass
class ViewInvariance:
    name: str
    across_views: float  # mean distance between cameras at the same instant
    across_instants: float  # mean distance between instants of one camera
    ratio: float  # across_views / across_instants: lower is more view-invariant
    instant_hit: float  # nearest frame of another camera within ±tolerance frames
    median_error: float  # median |t̂ - t| of that nearest frame (frames)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def view_invariance(name: str, feats: np.ndarray, valid: np.ndarray, tolerance: int = 3,
                    flipped: np.ndarray | None = None) -> ViewInvariance:
    """feats (C, T, d), valid (C, T) bool. With ``flipped`` each cross-camera distance is
    the lower of (a, b) and (a, flip b) — the flip-search baseline for mirrored views."""
    f = _unit(feats)
    ff = _unit(flipped) if flipped is not None else None
    n_cam, n_t = valid.shape
    views, instants, hits, errors = [], [], [], []
    for a, b in itertools.permutations(range(n_cam), 2):
        d = np.linalg.norm(f[a][:, None] - f[b][None], axis=-1)  # (T, T)
        if ff is not None:
            d = np.minimum(d, np.linalg.norm(f[a][:, None] - ff[b][None], axis=-1))
        ok = valid[a][:, None] & valid[b][None]
        d = np.where(ok, d, np.inf)
        t_ok = np.flatnonzero(valid[a] & valid[b])
        views.extend(d[t_ok, t_ok])
        for t in t_ok:  # only instants camera b saw too: otherwise there is nothing to find
            err = abs(int(np.argmin(d[t])) - t)
            hits.append(err <= tolerance)
            errors.append(err)
    for a in range(n_cam):
        d = np.linalg.norm(f[a][:, None] - f[a][None], axis=-1)
        ok = valid[a][:, None] & valid[a][None] & ~np.eye(n_t, dtype=bool)
        instants.extend(d[ok])
    av, ai = float(np.mean(views)), float(np.mean(instants))
    return ViewInvariance(name, av, ai, av / ai, float(np.mean(hits)), float(np.median(errors)))


def lunge_features(poses: np.ndarray, model: Vipe | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, T, 13, 3) keypoints → features, flipped features (C, T, d) and valid (C, T)."""
    valid = np.isfinite(poses).all(axis=(-1, -2))
    safe = np.where(valid[..., None, None], poses, 0.0)
    if model is None:
        f = normalize_joints(safe[..., :2])
        return f, flip_features(f), valid
    return embed_poses(model, safe), embed_poses(model, safe, flip=True), valid


def lunge_markdown(rows: list[ViewInvariance], n_frames: int, tolerance: int) -> str:
    lines = [f"Four synchronised cameras (lunge_cam01..04.mp4, {n_frames} frames each at 60 fps), BlazePose "
             "(complexity 1, static-image mode) on every full frame. Distances between unit-normalized "
             "per-frame features. *across views*: the same instant seen by two cameras; *across instants*: "
             "two different instants of one camera; *ratio* = views / instants (lower = more "
             f"view-invariant); *instant hit*: the nearest frame of another camera is within ±{tolerance} "
             "frames of the true instant.", "",
             "| features | across views | across instants | ratio | instant hit (%) | median error (frames) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.across_views:.3f} | {r.across_instants:.3f} | {r.ratio:.3f} | "
                     f"{100 * r.instant_hit:.1f} | {r.median_error:.0f} |")
    return "\n".join(lines) + "\n"


# --- lunges from a prepared corpus: teachers and distilled students on the same rows ------

@dataclass
class StoreLunges:
    """The four lunge cameras as a corpus store holds them: per camera, per output frame,
    the athlete row (or none). ``frames`` are the store's output frame indices (same
    instant in every camera: the videos are synchronised and prepared at one rate)."""

    frames: np.ndarray  # (T,) frame indices
    rows: np.ndarray  # (C, T) store row of that camera's athlete at that frame, −1 if none
    keypoints: np.ndarray  # (C, T, 13, 3) the teacher's keypoints (NaN where no row)
    fps: float

    @property
    def valid(self) -> np.ndarray:
        return self.rows >= 0


def store_lunges(store_path: str | Path) -> StoreLunges:
    """Align lunge_cam01..04 of a corpus store by output frame index."""
    from offline_train.corpus.store import open_store

    store = open_store(store_path)
    names = [Path(f).stem for f in LUNGE_FILES]
    missing = [n for n in names if n not in store.complete_videos()]
    if missing:
        raise InputError(f"{store_path}: the corpus has no complete {', '.join(missing)}; prepare all four "
                         "lunge_cam0*.mp4 into it")
    arrays, fps = [], set()
    for n in names:
        with store.open(n) as v:
            arrays.append({k: np.asarray(v.arrays[k]) for k in ("frame", "keypoints", "pose_score")})
            fps.add(float(v.attrs().get("fps") or 0.0))
    if len(fps) != 1:
        raise InputError(f"{store_path}: the lunge videos were prepared at different rates ({sorted(fps)})")
    lo = min(int(a["frame"].min()) for a in arrays if len(a["frame"]))
    hi = max(int(a["frame"].max()) for a in arrays if len(a["frame"]))
    frames = np.arange(lo, hi + 1)
    rows = np.full((len(names), len(frames)), -1, np.int64)
    kps = np.full((len(names), len(frames), 13, 3), np.nan, np.float32)
    for c, a in enumerate(arrays):
        # One athlete per frame; if a frame has several rows, the most confident pose wins.
        for r in np.argsort(a["pose_score"], kind="stable"):
            t = int(a["frame"][r]) - lo
            rows[c, t] = r
            kps[c, t] = a["keypoints"][r]
    return StoreLunges(frames, rows, kps, fps.pop())


def store_lunge_features(lunges: StoreLunges, features_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(C, T, d) embeddings and flipped embeddings from ``vpd-stream embed`` output, on the
    rows of ``lunges`` (zeros where a camera has no row)."""
    from offline_train.embed import load_features

    names = [Path(f).stem for f in LUNGE_FILES]
    feats, flipped = [], []
    for c, n in enumerate(names):
        path = Path(features_dir) / f"{n}.npz"
        if not path.is_file():
            raise InputError(f"{path} not found; run `vpd-stream embed STORE --out {features_dir}` on the same store")
        f = load_features(path)
        ok = lunges.rows[c] >= 0
        if len(f["frame"]) <= lunges.rows[c].max() or not np.array_equal(
                f["frame"][lunges.rows[c][ok]], lunges.frames[ok]):
            raise InputError(f"{path} does not match the corpus store's rows; re-run `vpd-stream embed` on it")
        e = np.zeros((len(lunges.frames), f["embedding"].shape[1]), np.float32)
        ef = np.zeros_like(e)
        e[ok], ef[ok] = f["embedding"][lunges.rows[c][ok]], f["embedding_flipped"][lunges.rows[c][ok]]
        feats.append(e)
        flipped.append(ef)
    return np.stack(feats), np.stack(flipped)


def store_lunge_markdown(rows: list[tuple[ViewInvariance, int]], lunges: StoreLunges, tolerance: int) -> str:
    n = int(lunges.valid.sum())
    lines = [f"The four lunge cameras as the corpus store holds them ({len(lunges.frames)} instants at "
             f"{lunges.fps:g} fps, {n} athlete rows over the 4 cameras). Every feature is measured on the same rows: "
             "the store's teacher keypoints for 2D joints and VIPE*, `vpd-stream embed` features for the students "
             "(their flipped features: the student on the mirrored crop). Same metric as the table above; *instant "
             f"hit*: within ±{tolerance} frames ({1000 * tolerance / lunges.fps:.0f} ms).", "",
             "| features | d | across views | across instants | ratio | instant hit (%) | median error (frames) |",
             "|---|---|---|---|---|---|---|"]
    for r, d in rows:
        lines.append(f"| {r.name} | {d} | {r.across_views:.3f} | {r.across_instants:.3f} | {r.ratio:.3f} | "
                     f"{100 * r.instant_hit:.1f} | {r.median_error:.0f} |")
    return "\n".join(lines) + "\n"
