"""The Penn Action benchmark in one call: NNS-DTW, few-shot BiGRU/NNS, retrieval, detection.

Produces a Markdown report. ``quick=True`` runs a small subset (for tests and smoke runs);
its numbers are not comparable to the full run.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .action_detection import (SWING_CLASSES, TIOUS, DetectorTrainConfig, activations, ap_table,
                        concat_sequences, mean_action_length, proposals, train_ensemble)
from .features import DESCRIPTIONS, get_feature_set
from .fewshot import KS, penn_splits
from vpd_stream.heads.nns import exact_flip_min_costs, flip_min_costs, nns_predict
from .penn_action import VIEWS, load_penn_action
from vpd_stream.heads.ensemble import predict_proba
from .recognition import TrainConfig, train_recognizer
from .retrieval import precision_at_k

PAPER_NNS_TOP1 = 98.2  # VPD supplement, section G (view-invariant pose embedding)


@dataclass
class EvalOptions:
    data: Path
    features: str = "pose2d"
    quick: bool = False
    detection: bool = True
    bigru: bool = True
    splits: int = 5
    seed: int = 0
    full_bigru: bool = True  # also train the BiGRU on the whole training set


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _mean_std(xs: list[float]) -> str:
    return f"{100 * np.mean(xs):.1f} ± {100 * np.std(xs):.1f}"


def run_penn_eval(opts: EvalOptions, log: Callable[[str], None] = print) -> str:
    t0 = time.time()
    fs = get_feature_set(opts.features)
    clips = load_penn_action(opts.data)
    train = [c for c in clips if c.train]
    test = [c for c in clips if not c.train]
    all_train_ids = [c.clip_id for c in train]
    splits = penn_splits(all_train_ids, [c.label for c in train])
    ks = KS
    n_splits = max(1, min(5, opts.splits))
    rcfg = TrainConfig()  # the full training set: the default recognizer's budget
    fcfg = TrainConfig(epochs=20)  # few-shot: the budget of the earlier tables (min_steps tops small sets up)
    if opts.quick:  # a small, fixed subset: exercises every code path in about a minute
        test = test[::12]
        ks, n_splits = (4,), 1
        rcfg = fcfg = TrainConfig(epochs=2, min_steps=4)
    Xtr = [fs.extract(c) for c in train]
    Xte = [fs.extract(c) for c in test]
    ytr = np.array([c.label for c in train])
    yte = np.array([c.label for c in test])
    pos = {cid: i for i, cid in enumerate(all_train_ids)}

    # Learned embeddings have no feature-space flip: the exact four-way search, and the
    # BiGRU / detector train without flip augmentation on them.
    flip = None if fs.extract_flipped is not None else fs.flip
    log(f"NNS-DTW: {len(Xte)} test queries x {len(Xtr)} train clips")
    if fs.extract_flipped is not None:
        costs = exact_flip_min_costs(Xte, [fs.extract_flipped(c) for c in test], Xtr,
                                     [fs.extract_flipped(c) for c in train])
    else:
        costs = flip_min_costs(Xte, Xtr, fs.flip)
    nns_full = float((nns_predict(costs, ytr) == yte).mean())
    retrieval = precision_at_k(costs, yte, ytr)

    cross = {}
    vtr = np.array([c.view for c in train])
    vte = np.array([c.view for c in test])
    for v in VIEWS:
        q, idx = vte == v, vtr != v
        if q.any():
            cross[v] = (int(q.sum()), precision_at_k(costs[q][:, idx], yte[q], ytr[idx]))

    fewshot: dict[int, dict[str, list[float]]] = {}
    for k in ks:
        fewshot[k] = {"bigru": [], "nns": []}
        for si, ids in enumerate(splits[str(k)][:n_splits]):
            cols = np.array([pos[i] for i in ids])
            fewshot[k]["nns"].append(float((nns_predict(costs[:, cols], ytr[cols]) == yte).mean()))
            if not opts.bigru:
                continue
            cfg = TrainConfig(**{**fcfg.__dict__, "seed": opts.seed + si})
            model, info = train_recognizer([Xtr[i] for i in cols], ytr[cols], 15, flip, cfg)
            acc = float((predict_proba([model], Xte, flip).argmax(1) == yte).mean())
            fewshot[k]["bigru"].append(acc)
            log(f"k={k} split {si}: BiGRU {acc:.3f} (best epoch {info['best_epoch']}/{info['epochs']}), "
                f"NNS {fewshot[k]['nns'][-1]:.3f}")

    full_bigru = None
    if opts.bigru and opts.full_bigru:
        model, info = train_recognizer(Xtr, ytr, 15, flip, rcfg)
        full_bigru = float((predict_proba([model], Xte, flip).argmax(1) == yte).mean())
        log(f"BiGRU, full training set: {full_bigru:.3f} (best epoch {info['best_epoch']}/{info['epochs']})")

    det = _detection(opts, fs, flip, test, Xte, log) if opts.detection else None

    lines = [
        f"Features: `{opts.features}` ({DESCRIPTIONS.get(opts.features, opts.features)}, from the hand-annotated "
        f"Penn Action poses), 25 fps; {len(Xtr)} train / {len(Xte)} test clips"
        + (" (**quick subset**)" if opts.quick else "") + f"; run took {time.time() - t0:.0f} s.",
        "",
        "### Recognition, full training set",
        "",
        "| method | top-1 (%) |",
        "|---|---|",
        f"| NNS-DTW ({opts.features}, this run) | {_pct(nns_full)} |",
    ] + ([f"| BiGRU ({opts.features}, this run; {rcfg.epochs} epochs, crop {rcfg.crop}) | {_pct(full_bigru)} |"]
         if full_bigru is not None else []) + [
        f"| NNS-DTW, VPD view-invariant embedding (paper, suppl. G) | {PAPER_NNS_TOP1} |",
        "",
        f"### Few-shot recognition (top-1 %, mean ± std over {n_splits} fixed splits, full test set)",
        "",
        "| k per class | BiGRU | NNS-DTW |",
        "|---|---|---|",
    ]
    for k in ks:
        bigru = _mean_std(fewshot[k]["bigru"]) if fewshot[k]["bigru"] else "not run"
        lines.append(f"| {k} | {bigru} | {_mean_std(fewshot[k]['nns'])} |")
    lines += ["", "### Retrieval (queries: test clips; corpus: train clips; DTW cost)", "",
              "| P@1 | P@10 | P@50 |", "|---|---|---|",
              "| " + " | ".join(_pct(retrieval[k]) for k in (1, 10, 50)) + " |", "",
              "### Cross-view retrieval (queries from one view; corpus: train clips of the other views)", "",
              "| query view | queries | P@1 | P@10 | P@50 |", "|---|---|---|---|---|"]
    for v, (n, p) in cross.items():
        lines.append(f"| {v} | {n} | " + " | ".join(_pct(p[k]) for k in (1, 10, 50)) + " |")
    if det is not None:
        lines += ["", det]
    return "\n".join(lines) + "\n"


def _detection(opts: EvalOptions, fs, flip, test, Xte, log: Callable[[str], None]) -> str:
    """Few-shot detection on concatenated test clips: train on 5 sequences, AP on the rest."""
    n_seq = 10 if opts.quick else 40
    seqs = concat_sequences(Xte, [c.action in SWING_CLASSES for c in test],
                            [c.clip_id for c in test], n_seq, seed=opts.seed)
    train_seqs, eval_seqs = seqs[:5], seqs[5:]
    cfg = DetectorTrainConfig(steps=6 if opts.quick else DetectorTrainConfig.steps,
                              eval_every=3 if opts.quick else DetectorTrainConfig.eval_every)
    models, _ = train_ensemble(train_seqs, flip, cfg, log)
    mean_len = mean_action_length(train_seqs)
    preds = [proposals(activations(models, q.features), mean_len) for q in eval_seqs]
    aps = ap_table(preds, [q.intervals for q in eval_seqs])
    n_gt = sum(len(q.intervals) for q in eval_seqs)
    frames = sum(len(q.labels) for q in eval_seqs)
    return "\n".join([
        f"### Few-shot swing detection (AP %, {len(eval_seqs)} untrimmed test sequences, {frames} frames, "
        f"{n_gt} swings; trained on 5 sequences, {cfg.folds}-fold ensemble, {cfg.steps} steps of "
        f"{cfg.batch_size} x {cfg.window}-frame windows; seed {opts.seed})",
        "",
        "| " + " | ".join(f"tIoU {t}" for t in TIOUS) + " |",
        "|" + "---|" * len(TIOUS),
        "| " + " | ".join(_pct(aps[t]) for t in TIOUS) + " |",
    ])


def report_header(command: str) -> str:
    date = datetime.date.today().isoformat()
    return f"Command: `{command}`  \nDate: {date}  \nMachine: 2 shared CPU cores, torch {torch.__version__}\n"
