"""Penn Action NNS-DTW top-1 of VIPE* models, quick: a fixed test subset or all 1,068 queries.

The search is the evaluation's own (``vpd_stream.heads.nns.exact_flip_min_costs``: DTW
symmetricP2 on unit-normalized features, the lowest cost over (q | flipped q) x (x |
flipped x), 1-NN over all 1,258 training clips); only the choice of queries differs. The
subset (``--subset N``) is a fixed, seeded sample of the test clips, the same for every
model, so candidates are compared like with like before the full run confirms them.

    python -m offline_train.vipe.penn_probe MODEL.safetensors [MODEL2 ...] [--subset 300]
        [--join-box] [--box-weight W]

``--join-box`` also reports the feature that joins each VIPE* embedding with the
box-normalized 2D joints (``pose2d_box``; ``offline_train.features.join_features``): both
unit-normalized, the 2D part weighted by ``W``, concatenated (a separate row, not
"VIPE*"); ``--loo`` adds its leave-one-out top-1 on the training clips, the figure the
weight is chosen by. Several models: their embeddings are
also reported concatenated (an ensemble of VIPE* models, still a VIPE* feature).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vpd_stream.heads.nns import exact_flip_min_costs, flip_min_costs, nns_predict
from vpd_stream.models.vipe import embed_poses, load_vipe
from vpd_stream.skeleton import box_features, flip_features

from ..features import JOIN_BOX_WEIGHT, join_features
from ..penn_action import PennClip, load_penn_action


def subset_indices(n_test: int, size: int | None, seed: int = 0) -> np.ndarray:
    """The fixed query subset: ``size`` test positions drawn with ``seed`` (sorted); None: all."""
    if size is None or size >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(seed).choice(n_test, size, replace=False))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def embed_clips(model_path: Path, clips: list[PennClip]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-clip embeddings and mirrored-pose embeddings, all frames in one batch."""
    model = load_vipe(model_path)
    kp = np.concatenate([c.keypoints for c in clips])
    cuts = np.cumsum([len(c.keypoints) for c in clips])[:-1]
    return (np.split(embed_poses(model, kp), cuts), np.split(embed_poses(model, kp, flip=True), cuts))


def top1_exact(q, qf, x, xf, yq, yx) -> float:
    return float((nns_predict(exact_flip_min_costs(q, qf, x, xf), yx) == yq).mean())


def loo_top1(x: list[np.ndarray], xf: list[np.ndarray], y: np.ndarray) -> float:
    """Leave-one-out NNS-DTW top-1 among the training clips (each one's own entry excluded):
    for choosing a setting without looking at the test set."""
    costs = exact_flip_min_costs(x, xf, x, xf)
    np.fill_diagonal(costs, np.inf)
    return float((nns_predict(costs, y) == y).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/penn_action"))
    ap.add_argument("--subset", type=int, default=300, help="test queries (0: all 1,068)")
    ap.add_argument("--join-box", action="store_true")
    ap.add_argument("--box-weight", type=float, action="append", default=None)
    ap.add_argument("--no-ensemble", action="store_true")
    ap.add_argument("--loo", action="store_true", help="--join-box: also leave-one-out top-1 on the training clips")
    ap.add_argument("--loo-only", action="store_true", help="--join-box: only the leave-one-out figure")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no OpenMP spinning on a busy box)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    t0 = time.time()
    clips = load_penn_action(a.data)
    train = [c for c in clips if c.train]
    test = [c for c in clips if not c.train]
    sel = subset_indices(len(test), a.subset or None)
    test = [test[i] for i in sel]
    ytr = np.array([c.label for c in train])
    yte = np.array([c.label for c in test])
    rows = []
    embs = []
    for m in a.models:
        t = time.time()
        tr, trf = embed_clips(m, train)
        te, tef = embed_clips(m, test)
        embs.append((tr, trf, te, tef))
        acc = top1_exact(te, tef, tr, trf, yte, ytr)
        rows.append({"feature": f"vipe:{m}", "queries": len(test), "top1": round(100 * acc, 2),
                     "seconds": round(time.time() - t, 1)})
        print(json.dumps(rows[-1]), flush=True)
    if len(embs) > 1 and not a.no_ensemble:
        t = time.time()
        cat = [[np.concatenate([_unit(e[k][i]) for e in embs], -1) for i in range(len(embs[0][k]))] for k in range(4)]
        acc = top1_exact(cat[2], cat[3], cat[0], cat[1], yte, ytr)
        rows.append({"feature": "vipe ensemble (concat): " + "+".join(m.stem for m in a.models),
                     "queries": len(test), "top1": round(100 * acc, 2), "seconds": round(time.time() - t, 1)})
        print(json.dumps(rows[-1]), flush=True)
    if a.join_box:
        btr = [box_features(c.keypoints) for c in train]
        bte = [box_features(c.keypoints) for c in test]
        t = time.time()
        acc = float((nns_predict(flip_min_costs(bte, btr, flip_features), ytr) == yte).mean())
        rows.append({"feature": "pose2d_box", "queries": len(test), "top1": round(100 * acc, 2),
                     "seconds": round(time.time() - t, 1)})
        print(json.dumps(rows[-1]), flush=True)
        for w in a.box_weight or [JOIN_BOX_WEIGHT]:
            for mi, (tr, trf, te, tef) in enumerate(embs):
                jtr = [join_features(e, b, w) for e, b in zip(tr, btr)]
                jtrf = [join_features(e, flip_features(b), w) for e, b in zip(trf, btr)]
                t = time.time()
                row = {"feature": f"vipe+pose2d_box (w={w}): {a.models[mi]}", "queries": len(test)}
                if a.loo:
                    row["train_loo_top1"] = round(100 * loo_top1(jtr, jtrf, ytr), 2)
                if not a.loo_only:
                    jte = [join_features(e, b, w) for e, b in zip(te, bte)]
                    jtef = [join_features(e, flip_features(b), w) for e, b in zip(tef, bte)]
                    row["top1"] = round(100 * top1_exact(jte, jtef, jtr, jtrf, yte, ytr), 2)
                row["seconds"] = round(time.time() - t, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"total {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
