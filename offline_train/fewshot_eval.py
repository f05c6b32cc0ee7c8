"""Few-shot evaluation of any labelled set: recognition, detection, retrieval, per feature set and k.

Protocol (the splits are drawn once, seeded, and saved as JSON so reruns and other feature
sets see the very same examples; an existing file is reused as it is):

* **A fixed split** — when the label CSV has a ``split`` column (``train`` / ``test``), the
  test videos are the test set and the train videos the pool.
* **Cross-validation over videos** otherwise: the videos are dealt (seeded) into
  ``folds`` folds; each fold in turn is the test set and the other folds the pool. Whole
  videos are held out, never frames.

From the pool, split ``s`` of size ``k`` draws ``k`` training examples: for detection, k
training *clips*; for recognition and retrieval, k labelled spans *per class* (all when a
class has fewer). ``all`` is the whole pool (one split). A metric is computed over all test
examples of all folds together (every clip is scored by the model whose pool excluded it),
then mean ± std over the splits.

Tasks and metrics: detection — AP at temporal IoU 0.3 ... 0.7 (the detector's proposals,
threshold 0.2 as in the paper, min length 3, stretched to the training length); recognition
— top-1 accuracy of NNS-DTW and of the BiGRU; retrieval — precision@1/5/10 by DTW cost.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vpd_stream.errors import ConfigError, InputError

from .action_detection import (
    TIOUS,
    DetectorTrainConfig,
    activations,
    ap_table,
    mean_action_length,
)
from .clip_dataset import Dataset
from .sport_heads import detection_sequences, fit_detector, nns_costs, span_sequences

TASKS = ("recognition", "detection", "retrieval")


@dataclass
class FewShotOptions:
    task: str = "detection"
    ks: tuple = (2, 4, 8, 16, "all")
    splits: int = 5
    folds: int = 5
    seed: int = 0
    bigru: bool = True
    actions: set[str] | None = None
    detector: DetectorTrainConfig = field(default_factory=DetectorTrainConfig)
    epochs: int = 20
    proposal_threshold: float = 0.2


def parse_ks(text: str) -> tuple:
    out: list = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append("all")
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise ConfigError(f"--k '{text}': a comma-separated list of positive numbers and 'all'")
    return tuple(out)


# -- splits -----------------------------------------------------------------------------


def _units(ds: Dataset, task: str) -> tuple[list[str], list[str]]:
    """(ids, class) of the examples drawn: clips for detection, spans for the others."""
    if task == "detection":
        names = sorted(ds.clips)
        return names, ["clip"] * len(names)
    ids, classes = [], []
    for n in sorted(ds.clips):
        for i, (s, e, lab) in enumerate(ds.clips[n].spans):
            ids.append(f"{n}#{s}-{e}")
            classes.append(lab)
    return ids, classes


def _video_of(uid: str) -> str:
    return uid.split("#", 1)[0]


def make_splits(ds: Dataset, opts: FewShotOptions) -> dict:
    ids, classes = _units(ds, opts.task)
    rng = np.random.default_rng(opts.seed)
    videos = sorted(ds.clips)
    split_col = {s.video: s.extra.get("split", "") for s in ds.labels.spans}
    if any(v for v in split_col.values()):
        test_videos = [[v for v in videos if split_col.get(v) == "test"]]
        if not test_videos[0]:
            raise InputError(f"{ds.labels.path}: the split column names no 'test' video")
        protocol = "fixed split (the labels' split column)"
    else:
        if len(videos) < 2:
            raise InputError(f"{ds.labels.path}: cross-validation needs at least two videos")
        order = [videos[i] for i in rng.permutation(len(videos))]
        test_videos = [sorted(f.tolist()) for f in np.array_split(np.array(order), min(opts.folds, len(videos)))]
        protocol = f"{len(test_videos)}-fold cross-validation over videos"
    by_class: dict[str, list[str]] = {}
    folds = []
    for test in test_videos:
        tset = set(test)
        pool = [(u, c) for u, c in zip(ids, classes) if _video_of(u) not in tset
                and (split_col.get(_video_of(u), "") in ("", "train"))]
        train: dict[str, list[list[str]]] = {}
        for k in opts.ks:
            draws = []
            for _ in range(1 if k == "all" else opts.splits):
                if k == "all":
                    draws.append(sorted(u for u, _ in pool))
                    continue
                chosen: list[str] = []
                by_class = {}
                for u, c in pool:
                    by_class.setdefault(c, []).append(u)
                for c in sorted(by_class):
                    members = by_class[c]
                    take = min(int(k), len(members))
                    chosen += sorted(rng.choice(members, size=take, replace=False).tolist())
                draws.append(chosen)
            train[str(k)] = draws
        folds.append({"test_videos": test, "train": train})
    return {"meta": {"task": opts.task, "protocol": protocol, "seed": opts.seed, "ks": [str(k) for k in opts.ks],
                     "splits": opts.splits, "labels": str(ds.labels.path)}, "folds": folds}


def load_or_make_splits(path: Path, ds: Dataset, opts: FewShotOptions, log: Callable[[str], None]) -> dict:
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        have = set(data["meta"]["ks"])
        missing = [str(k) for k in opts.ks if str(k) not in have]
        if data["meta"].get("task") != opts.task or missing or data["meta"]["splits"] < opts.splits:
            raise InputError(f"{path} holds {data['meta']['splits']} splits for task {data['meta'].get('task')} and "
                             f"k = {','.join(data['meta']['ks'])}; pass another --splits-file for this run")
        # The first --splits draws of each k (and only the k asked for): a cheaper run sees a prefix.
        keep = [str(k) for k in opts.ks]
        for fold in data["folds"]:
            fold["train"] = {k: fold["train"][k][:opts.splits] for k in keep}
        data["meta"] = {**data["meta"], "ks": keep, "splits": opts.splits}
        log(f"using the saved splits {path} (the first {opts.splits} per k)")
        return data
    data = make_splits(ds, opts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the splits file {path} ({exc}); pass --splits-file") from None
    log(f"wrote the splits {path}")
    return data


# -- tasks ------------------------------------------------------------------------------


def _detection(ds: Dataset, splits: dict, opts: FewShotOptions, log) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for k in splits["meta"]["ks"]:
        n_splits = len(splits["folds"][0]["train"][k])
        results = []
        for si in range(n_splits):
            preds, gts = [], []
            for fi, fold in enumerate(splits["folds"]):
                train_names = fold["train"][k][si]
                seqs = detection_sequences(ds, train_names, opts.actions)
                cfg = DetectorTrainConfig(**{**opts.detector.__dict__, "seed": opts.seed + 100 * si + fi})
                head = fit_detector(seqs, ds.flip, cfg)
                mean_len = mean_action_length(seqs)
                from vpd_stream.heads.intervals import proposals

                for n in fold["test_videos"]:
                    c = ds.clips[n]
                    act = activations(head.models, c.features)
                    preds.append(proposals(act, mean_len, opts.proposal_threshold))
                    gts.append(c.intervals(opts.actions))
            aps = ap_table(preds, gts)
            results.append({str(t): a for t, a in aps.items()})
            log(f"{ds.features} k={k} split {si}: AP " + " ".join(f"{100 * a:.1f}" for a in aps.values()))
        out[k] = results
    return out


def _span_arrays(ds: Dataset):
    xs, fx, ys, vids = span_sequences(ds)
    uids = [f"{v}#{x}" for v, x in zip(vids, _span_keys(ds))]
    return xs, fx, ys, uids


def _span_keys(ds: Dataset) -> list[str]:
    keys = []
    for n in sorted(ds.clips):
        for s, e, _ in ds.clips[n].spans:
            keys.append(f"{s}-{e}")
    return keys


def _recognition(ds: Dataset, splits: dict, opts: FewShotOptions, log, retrieval: bool) -> dict[str, list[dict]]:
    from vpd_stream.heads.ensemble import predict_proba

    from .recognition import TrainConfig, train_recognizer
    from .retrieval import precision_at_k

    xs, fx, ys, uids = _span_arrays(ds)
    pos = {u: i for i, u in enumerate(uids)}
    classes = sorted(set(ys))
    y = np.array([classes.index(v) for v in ys])
    vid = np.array([_video_of(u) for u in uids])
    out: dict[str, list[dict]] = {}
    cost_cache: dict[int, np.ndarray] = {}
    for fi, fold in enumerate(splits["folds"]):  # one cost matrix per fold: test spans x pool spans
        test = np.flatnonzero(np.isin(vid, fold["test_videos"]))
        pool = sorted({pos[u] for draws in fold["train"].values() for d in draws for u in d})
        c = nns_costs(ds, [xs[i] for i in test], [fx[i] for i in test], [xs[i] for i in pool], [fx[i] for i in pool])
        full = np.full((len(test), len(xs)), np.inf)
        full[:, pool] = c
        cost_cache[fi] = full
        log(f"fold {fi + 1}/{len(splits['folds'])}: {len(test)} test x {len(pool)} pool DTW costs")
    for k in splits["meta"]["ks"]:
        n_splits = len(splits["folds"][0]["train"][k])
        results = []
        for si in range(n_splits):
            hits_nns, hits_gru, prec = [], [], {1: [], 5: [], 10: []}
            for fi, fold in enumerate(splits["folds"]):
                test = np.flatnonzero(np.isin(vid, fold["test_videos"]))
                cols = np.array([pos[u] for u in fold["train"][k][si]])
                costs = cost_cache[fi][:, cols]
                if retrieval:
                    p = precision_at_k(costs, y[test], y[cols], ks=(1, 5, 10))
                    for kk in prec:
                        if kk in p:
                            prec[kk].append((p[kk], len(test)))
                    continue
                hits_nns += (y[cols][np.argmin(costs, 1)] == y[test]).tolist()
                if opts.bigru:
                    cfg = TrainConfig(epochs=opts.epochs, seed=opts.seed + si)
                    model, _ = train_recognizer([xs[i] for i in cols], y[cols], len(classes), ds.flip, cfg)
                    flipped = [fx[i] for i in test] if ds.kind == "embedding" else None
                    probs = predict_proba([model], [xs[i] for i in test], ds.flip, flipped=flipped)
                    hits_gru += (probs.argmax(1) == y[test]).tolist()
            if retrieval:
                r = {f"P@{kk}": float(sum(p * n for p, n in v) / sum(n for _, n in v)) for kk, v in prec.items() if v}
            else:
                r = {"NNS-DTW": float(np.mean(hits_nns))}
                if opts.bigru:
                    r["BiGRU"] = float(np.mean(hits_gru))
            results.append(r)
            log(f"{ds.features} k={k} split {si}: " + ", ".join(f"{m} {100 * v:.1f}" for m, v in r.items()))
        out[k] = results
    return out


def run_fewshot(datasets: list[Dataset], splits_path: Path, opts: FewShotOptions,
                log: Callable[[str], None] = print) -> dict:
    """{feature spec: {k: [metrics per split]}} (and the splits used)."""
    if opts.task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}, not {opts.task!r}")
    names = [sorted(d.clips) for d in datasets]
    if any(n != names[0] for n in names[1:]):
        raise InputError("the feature sets cover different videos; embed the whole store for each")
    splits = load_or_make_splits(splits_path, datasets[0], opts, log)
    results = {}
    for ds in datasets:
        t0 = time.time()
        if opts.task == "detection":
            results[ds.features] = _detection(ds, splits, opts, log)
        else:
            results[ds.features] = _recognition(ds, splits, opts, log, retrieval=opts.task == "retrieval")
        log(f"{ds.features}: {time.time() - t0:.0f} s")
    return {"results": results, "splits": splits}


def _ms(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{100 * xs[0]:.1f}"
    return f"{100 * np.mean(xs):.1f} ± {100 * np.std(xs):.1f}"


def _k_label(k: str, splits: dict) -> str:
    if k != "all":
        return k
    sizes = sorted({len(f["train"]["all"][0]) for f in splits["folds"]})
    return f"all ({sizes[0]})" if len(sizes) == 1 else f"all ({sizes[0]}-{sizes[-1]})"


def markdown(report: dict, task: str) -> str:
    results, splits = report["results"], report["splits"]
    meta = splits["meta"]
    unit = "training clips" if task == "detection" else "training examples per class"
    lines = [f"Protocol: {meta['protocol']}; k = {unit}; mean ± std over {meta['splits']} fixed splits per k "
             f"(one for 'all'); seed {meta['seed']}.", ""]
    if task == "detection":
        cols = [str(t) for t in TIOUS]
        for spec, by_k in results.items():
            lines += [f"#### `{spec}` — AP (%) at temporal IoU", "",
                      "| k | " + " | ".join(f"tIoU {c}" for c in cols) + " | mean |",
                      "|---|" + "---|" * (len(cols) + 1)]
            for k, runs in by_k.items():
                cells = [_ms([r[c] for r in runs]) for c in cols]
                cells.append(_ms([float(np.mean([r[c] for c in cols])) for r in runs]))
                lines.append(f"| {_k_label(k, splits)} | " + " | ".join(cells) + " |")
            lines.append("")
    else:
        metrics = list(next(iter(next(iter(results.values())).values()))[0])
        header = "| k | " + " | ".join(f"{spec} {m}" for spec in results for m in metrics) + " |"
        lines += [f"#### {task}: {'top-1 accuracy' if task == 'recognition' else 'precision'} (%)", "", header,
                  "|---|" + "---|" * (len(results) * len(metrics))]
        for k in next(iter(results.values())):
            cells = [_ms([r[m] for r in results[spec][k]]) for spec in results for m in metrics]
            lines.append(f"| {_k_label(k, splits)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, task: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, splits = report["results"], report["splits"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for spec, by_k in results.items():
        ks = list(by_k)
        xs = list(range(len(ks)))
        if task == "detection":
            series = {"mean AP": [[float(np.mean(list(r.values()))) for r in by_k[k]] for k in ks]}
        else:
            series = {m: [[r[m] for r in by_k[k]] for k in ks] for m in by_k[ks[0]][0]}
        for m, vals in series.items():
            mean = [100 * np.mean(v) for v in vals]
            std = [100 * np.std(v) for v in vals]
            ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=f"{spec} {m}")
        ax.set_xticks(xs, [_k_label(k, splits) for k in ks])
    ax.set_xlabel("k (" + ("training clips" if task == "detection" else "examples per class") + ")")
    ax.set_ylabel({"detection": "AP (%), mean over tIoU 0.3-0.7", "recognition": "top-1 (%)",
                   "retrieval": "precision (%)"}[task])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
