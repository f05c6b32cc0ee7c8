"""Penn Action evaluation of JMRN: full training set, few-shot splits, ablations, fusion.

Each experiment is one call (``run_experiment``) that writes ``<out>/<name>.json`` (top-1
and training stats) and ``<out>/<name>.npz`` (train and test log-probabilities), so a
table can be assembled from runs made at different times (``results_table``) and no
single job has to hold the machine for long. The protocol is the BiGRU's: official
train/test split, 25 fps, the committed few-shot splits of ``offline_train/fewshot.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from vpd_stream.heatmaps import HeatmapConfig, clip_heatmaps
from vpd_stream.models.jmrn import JmrnConfig
from vpd_stream.skeleton import MIN_JOINT_SCORE

from ..penn_action import CLASSES, load_penn_action
from .augment import AugmentConfig
from .train import TrainConfig, predict_logits, train_jmrn

# The CPU preset (2 shared cores): 32×32 maps, narrow extractor. The paper's sizes are
# JmrnConfig's defaults (64×64 maps, 128-128-256-256, 512-wide classifier).
# Missing joints (Penn's visibility 0) are not drawn: skeleton.MIN_JOINT_SCORE (issue 15).
CPU_HEATMAP = HeatmapConfig(height=32, width=32, sigma=1.0, normalization="area", min_score=MIN_JOINT_SCORE)
CPU_MODEL = dict(extractor=(8, 8, 16, 16), c_dim=8, selector_hidden=32, cls_width=32,
                 proj_hidden=32, proj_dim=16, dropout=0.2)

# The ablation variants (Tables 4–5 in spirit): contrastive mode × pose-aware augmentation.
VARIANTS: dict[str, tuple[str, bool]] = {
    "proposed": ("supervised", True),
    "no_contrastive": ("none", True),
    "only_aug": ("instance", True),
    "proposed_no_paa": ("supervised", False),
    "no_contrastive_no_paa": ("none", False),
}


@dataclass
class PennMaps:
    ids: list[str]
    labels: np.ndarray  # (N,)
    train: np.ndarray  # (N,) bool, official split
    maps: np.ndarray  # (N, 13, 3, H, W) float16


def default_cache_dir() -> Path:
    return Path(os.environ.get("VPD_CACHE_DIR", Path.home() / ".cache" / "vpd_stream")) / "jmrn"


def load_penn_maps(root: Path, hm: HeatmapConfig = CPU_HEATMAP, cache_dir: Path | None = None,
                   limit: int | None = None,
                   render: tuple[str, Callable[[np.ndarray, HeatmapConfig], np.ndarray]] | None = None) -> PennMaps:
    """Heatmaps of every Penn Action clip (25 fps), cached on disk by configuration.

    Each clip's (T, 13, 3) keypoints — x, y and the visibility flag as the joint's score —
    go to ``clip_heatmaps``, the function the stream uses, so an invisible joint is missing
    by the one rule (``hm.min_score``). ``render`` (name, function) replaces it for a
    measurement (``offline_train.jmrn.missing_study``); the name enters the cache key.
    """
    name, fn = render or ("clip_heatmaps", clip_heatmaps)
    key = hashlib.sha1(json.dumps([asdict(hm), limit, str(Path(root).resolve()), name]).encode()).hexdigest()[:12]
    cache = (cache_dir or default_cache_dir()) / f"penn_{key}.npz"
    if cache.is_file():
        z = np.load(cache)
        return PennMaps([str(i) for i in z["ids"]], z["labels"], z["train"], z["maps"])
    clips = load_penn_action(Path(root), limit=limit)
    maps = np.stack([fn(c.keypoints, hm) for c in clips]).astype(np.float16)
    out = PennMaps([c.clip_id for c in clips], np.array([c.label for c in clips]),
                   np.array([c.train for c in clips]), maps)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=np.array(out.ids), labels=out.labels, train=out.train, maps=out.maps)
    return out


def model_config(hm: HeatmapConfig, num_classes: int = len(CLASSES), **over) -> JmrnConfig:
    return JmrnConfig(num_classes=num_classes, height=hm.height, width=hm.width, **{**CPU_MODEL, **over})


def train_config(variant: str, seed: int = 0, **over) -> TrainConfig:
    mode, paa = VARIANTS[variant]
    return replace(TrainConfig(contrastive=mode, augment=AugmentConfig(paa=paa), seed=seed), **over)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean()) if len(labels) else float("nan")


def fewshot_ids(data: PennMaps, k: int, split: int) -> list[str]:
    from ..fewshot import penn_splits

    tr = np.flatnonzero(data.train)
    splits = penn_splits([data.ids[i] for i in tr], [int(data.labels[i]) for i in tr])
    return splits[str(k)][split]


def run_experiment(data: PennMaps, name: str, out_dir: Path, variant: str = "proposed",
                   train_ids: list[str] | None = None, train_over: dict | None = None,
                   model_over: dict | None = None, hm: HeatmapConfig = CPU_HEATMAP,
                   log: Callable[[str], None] | None = None):
    """Train on the official train split (or ``train_ids``), test on the official test split."""
    pos = {cid: i for i, cid in enumerate(data.ids)}
    tr = np.flatnonzero(data.train) if train_ids is None else np.array([pos[c] for c in train_ids])
    te = np.flatnonzero(~data.train)
    mcfg = model_config(hm, **(model_over or {}))
    tcfg = train_config(variant, **(train_over or {}))
    model, stats = train_jmrn(data.maps[tr], data.labels[tr], mcfg, tcfg, log=log)
    train_logits = predict_logits(model, data.maps[tr])
    test_logits = predict_logits(model, data.maps[te])
    result = {"name": name, "variant": variant, "top1": top1(test_logits, data.labels[te]),
              "train_top1": top1(train_logits, data.labels[tr]), "test": int(len(te)),
              "heatmap": asdict(hm), "model": mcfg.to_dict(), "train_config": _jsonable(asdict(tcfg)),
              **{k: v for k, v in stats.items() if k != "history"}, "history": stats["history"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    np.savez(out_dir / f"{name}.npz", train_idx=tr, test_idx=te, train_logits=train_logits,
             test_logits=test_logits)
    return model, result


def _jsonable(d):
    return json.loads(json.dumps(d, default=list))


def read_result(out_dir: Path, name: str) -> dict | None:
    f = out_dir / f"{name}.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


# -- the parts of `vpd-stream eval penn-action-jmrn` ---------------------------------------

FULL_EPOCHS = 5  # 2 shared CPU cores: ~40 steps an epoch at ~2 s a step
ABLATION_K = 8  # ablations train on the k = 8 few-shot split 0 (120 clips) to stay short
FEWSHOT_OVER = {"min_steps": 30, "epochs": 4}  # ~30–60 steps per few-shot run (2 shared cores)
BIGRU_EPOCHS = 15  # issue 5 uses 30; halved to fit the shared machine
FIGURES = Path(__file__).resolve().parents[2] / "figures"


def run_part(root: Path, out: Path, part: str, variant: str = "proposed", shots: int | None = None,
             split: int = 0, extra_logits: list[Path] | None = None, results: Path | None = None,
             quick: bool = False, log: Callable[[str], None] = print, min_steps: int | None = None,
             beta: int | None = None, gamma: int | None = None, bigru_weights: Path | None = None) -> dict | None:
    from vpd_stream.errors import ConfigError
    from vpd_stream.models.jmrn import save_jmrn

    if part == "table":
        text = results_table(out)
        if results is not None:
            results.write_text(text, encoding="utf-8")
            log(f"wrote {results}")
        else:
            log(text)
        return None
    data = load_penn_maps(root, limit=120 if quick else None)
    quick_over = {"epochs": 1, "min_steps": 0, "batch_size": 16} if quick else {}
    if min_steps is not None and not quick:
        quick_over["min_steps"] = min_steps
    if part == "full":
        model, res = run_experiment(data, "full_proposed", out, "proposed",
                                    train_over={"epochs": FULL_EPOCHS, **quick_over}, log=log)
        save_jmrn(out / "weights" / "jmrn_full.safetensors", model, asdict(CPU_HEATMAP), list(CLASSES),
                  {"test_top1": round(res["top1"], 4), "dataset": "penn_action official train split, 25 fps",
                   "command": "vpd-stream eval penn-action-jmrn --part full", "epochs": res["epochs"]})
    elif part == "ablation":
        if variant not in VARIANTS:
            raise ConfigError(f"unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}")
        ids = None if quick else fewshot_ids(data, ABLATION_K, 0)
        name, over = f"ablation_{variant}", {**FEWSHOT_OVER, **quick_over}
        if beta is not None or gamma is not None:
            aug = AugmentConfig(paa=VARIANTS[variant][1])
            aug = replace(aug, beta=aug.beta if beta is None else beta, gamma=aug.gamma if gamma is None else gamma)
            name, over["augment"] = f"{name}_b{aug.beta}g{aug.gamma}", aug
        _, res = run_experiment(data, name, out, variant, train_ids=ids, train_over=over, log=log)
    elif part == "fewshot":
        if shots is None:
            raise ConfigError("--part fewshot needs -k/--shots (4, 8, 16 or 32)")
        ids = None if quick else fewshot_ids(data, shots, split)
        _, res = run_experiment(data, f"fewshot_k{shots}_s{split}", out, "proposed", train_ids=ids,
                                train_over={**FEWSHOT_OVER, **quick_over}, log=log)
    elif part == "bigru":
        res = run_bigru(root, data, out, quick, log, bigru_weights)
    elif part == "fusion":
        res = run_fusion(data, out, extra_logits or [], log)
    elif part == "clips":
        res = run_clip_selection(root, data, out, quick, log)
    else:
        raise ConfigError(f"unknown part '{part}'")
    log(f"{part}: " + json.dumps({k: v for k, v in res.items() if k in ("name", "top1", "train_top1", "epochs", "train_seconds", "fused_top1", "weights")}))
    return res


def run_bigru(root: Path, data: PennMaps, out: Path, quick: bool, log: Callable[[str], None],
              bigru_weights: Path | None = None) -> dict:
    """The issue-5 BiGRU on normalized 2D joints, trained through its own functions; logits for fusion."""
    from ..features import get_feature_set
    from vpd_stream.heads.ensemble import predict_proba
    from ..recognition import TrainConfig as GruConfig, train_recognizer
    from ..penn_action import penn_anatomical
    from .sides import reads_anatomical_sides

    bundle = None
    if bigru_weights is not None:  # an already trained head (e.g. plugins/weights/penn_recognizer)
        from vpd_stream.models.head_io import load_heads

        bundle = load_heads(bigru_weights, kind="recognizer")
    # The features the head was trained on (its sidecar's feature_set; the default head's
    # is pose2d_box); a head trained here uses pose2d, as issue 8's run did.
    fs = get_feature_set(bundle.meta.get("feature_set", "pose2d") if bundle is not None else "pose2d")
    clips = {c.clip_id: c for c in load_penn_action(root, limit=120 if quick else None)}
    if bundle is not None and reads_anatomical_sides(bundle.meta):  # a head for the person's own sides
        clips = {k: penn_anatomical(c) for k, c in clips.items()}
    seqs = [fs.extract(clips[i]) for i in data.ids]
    tr, te = np.flatnonzero(data.train), np.flatnonzero(~data.train)
    models: list[Callable]
    if bundle is not None:
        models, stats = list(bundle.models), {"weights": str(bigru_weights), "command": bundle.meta.get("command", "")}
    else:
        cfg = GruConfig(epochs=1, min_steps=0) if quick else GruConfig(epochs=BIGRU_EPOCHS)
        model, stats = train_recognizer([seqs[i] for i in tr], data.labels[tr], len(CLASSES), fs.flip, cfg, log=log)
        models = [model]
    p_tr = np.log(np.clip(predict_proba(models, [seqs[i] for i in tr], fs.flip) / 2, 1e-8, 1))
    p_te = np.log(np.clip(predict_proba(models, [seqs[i] for i in te], fs.flip) / 2, 1e-8, 1))
    res = {"name": "bigru_full", "top1": top1(p_te, data.labels[te]), "train_top1": top1(p_tr, data.labels[tr]),
           "features": fs.name, **{k: v for k, v in stats.items()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bigru_full.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    np.savez(out / "bigru_full.npz", train_idx=tr, test_idx=te, train_logits=p_tr, test_logits=p_te)
    return res


def run_fusion(data: PennMaps, out: Path, extra: list[Path], log: Callable[[str], None]) -> dict:
    """Learned scalar fusion of JMRN and BiGRU (and any --extra-logits) on the training set."""
    from vpd_stream.errors import ConfigError

    from .fusion import fit_fusion

    sources = [("jmrn", out / "full_proposed.npz"), ("bigru", out / "bigru_full.npz")]
    sources += [(p.stem, p) for p in extra]
    missing = [str(p) for _, p in sources if not p.is_file()]
    if missing:
        raise ConfigError(f"fusion needs {', '.join(missing)}; run --part full and --part bigru first")
    arrays = [np.load(p) for _, p in sources]
    tr, te = np.flatnonzero(data.train), np.flatnonzero(~data.train)
    y_tr, y_te = data.labels[tr], data.labels[te]
    fusion = fit_fusion([a["train_logits"] for a in arrays], y_tr)
    fused = fusion.scores([a["test_logits"] for a in arrays])
    equal = sum(np.asarray(a["test_logits"]) for a in arrays)
    res = {"name": "fusion", "modalities": [n for n, _ in sources],
           "single_top1": {n: top1(a["test_logits"], y_te) for (n, _), a in zip(sources, arrays)},
           "equal_top1": top1(equal, y_te), "fused_top1": top1(fused, y_te),
           "weights": np.asarray(fusion.weights).round(4).tolist()}
    (out / "fusion.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    _fusion_figure(res)
    return res


def _fusion_figure(res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{n}\n(w={w:.2f})" for n, w in zip(res["modalities"], res["weights"])] + ["equal sum", "learned fusion"]
    vals = list(res["single_top1"].values()) + [res["equal_top1"], res["fused_top1"]]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(len(vals)), [100 * v for v in vals], color=["#888"] * (len(vals) - 2) + ["#69c", "#c63"])
    ax.set_xticks(range(len(vals)), names, fontsize=8)
    ax.set_ylim(max(0, 100 * min(vals) - 10), 100)
    ax.set_ylabel("Penn Action test top-1 (%)")
    for i, v in enumerate(vals):
        ax.text(i, 100 * v + 0.3, f"{100 * v:.1f}", ha="center", fontsize=8)
    ax.set_title("Late fusion of JMRN and the BiGRU (weights fitted on train)", fontsize=9)
    fig.tight_layout()
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "jmrn_fusion.png", dpi=120)
    plt.close(fig)


NUM_CLIPS = 6


def run_clip_selection(root: Path, data: PennMaps, out: Path, quick: bool, log: Callable[[str], None]) -> dict:
    """Accuracy vs clips used: ranker vs dense, random, uniform (and the oracle bound)."""
    import torch

    from vpd_stream.errors import ConfigError
    from vpd_stream.models.jmrn import load_jmrn

    from .clip_selection import (RankerConfig, accuracy_vs_k, clip_descriptor, clip_windows, fit_ranker,
                                 normalized, oracle_topk)

    weights = out / "weights" / "jmrn_full.safetensors"
    if not weights.is_file():
        raise ConfigError(f"clip selection needs the clip classifier {weights}; run --part full first")
    model, _ = load_jmrn(weights)
    clips = {c.clip_id: c for c in load_penn_action(root, limit=120 if quick else None)}
    # Every other training video trains the ranker (enough for a 66-d MLP; halves the rendering).
    keep = np.flatnonzero(~data.train | (np.cumsum(data.train) % 2 == 1))
    data = PennMaps([data.ids[i] for i in keep], data.labels[keep], data.train[keep], data.maps[:0])
    maps, desc = [], []
    for cid in data.ids:
        kp = clips[cid].keypoints  # x, y, visibility: missing joints by the one rule
        norm = normalized(kp)
        for s, e in clip_windows(len(kp), NUM_CLIPS):
            maps.append(clip_heatmaps(kp[s:e], CPU_HEATMAP).astype(np.float16))
            desc.append(clip_descriptor(norm, s, e))
    maps_arr = np.stack(maps)
    logp = predict_logits(model, maps_arr, flip_tta=False).reshape(len(data.ids), NUM_CLIPS, -1)
    desc_arr = np.stack(desc).reshape(len(data.ids), NUM_CLIPS, -1)
    tr, te = np.flatnonzero(data.train), np.flatnonzero(~data.train)
    rcfg = RankerConfig()
    ranker = fit_ranker(desc_arr[tr], oracle_topk(logp[tr], data.labels[tr], rcfg.k), rcfg)
    with torch.no_grad():
        scores = ranker(torch.as_tensor(desc_arr[te])).numpy()
    ks = list(range(1, NUM_CLIPS + 1))
    curves = accuracy_vs_k(logp[te], data.labels[te], scores, ks)
    res = {"name": "clip_selection", "num_clips": NUM_CLIPS, "ks": ks, "curves": curves,
           "ranker_k": rcfg.k, "classifier": "full_proposed JMRN on each clip's heatmaps"}
    (out / "clip_selection.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    _clips_figure(res)
    return res


def _clips_figure(res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    styles = {"dense": "k--", "uniform": "b-o", "random": "g-s", "ranker": "r-^", "oracle": "m:"}
    for name, curve in res["curves"].items():
        ax.plot(res["ks"], [100 * v for v in curve], styles.get(name, "-"), label=name, markersize=4)
    ax.set_xlabel(f"clips used (K of {res['num_clips']})")
    ax.set_ylabel("Penn Action test top-1 (%)")
    ax.set_title("Pose-guided clip selection", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "jmrn_clip_selection.png", dpi=120)
    plt.close(fig)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _bigru_name(r: dict | None) -> str:
    if r and r.get("weights"):
        return f"BiGRU on normalized 2D joints ({Path(r['weights']).stem}: `{r.get('command', '')}`)"
    return f"BiGRU on normalized 2D joints (issue 5's train_recognizer, {BIGRU_EPOCHS} epochs)"


def results_table(out: Path) -> str:
    """Markdown tables from every cached part under ``out`` (missing parts show as —)."""
    def top(name: str) -> float | None:
        r = read_result(out, name)
        return None if r is None else r["top1"]

    lines = ["## JMRN on Penn Action (official test split, 1,068 clips, top-1 %)", "",
             "| model | training clips | top-1 |", "|---|---|---|",
             f"| JMRN (PAA + supervised joint-contrastive) | full train split | {_pct(top('full_proposed'))} |",
             f"| {_bigru_name(read_result(out, 'bigru_full'))} | full train split | {_pct(top('bigru_full'))} |"]
    fusion = read_result(out, "fusion")
    if fusion:
        w = ", ".join(f"{v:.2f}" for v in np.ravel(fusion["weights"]))
        lines.append(f"| JMRN + BiGRU, learned late fusion (weights {w}) | full train split | {_pct(fusion['fused_top1'])} |")
        lines.append(f"| JMRN + BiGRU, equal-weight sum | full train split | {_pct(fusion['equal_top1'])} |")
    lines += ["", "### Few-shot (proposed JMRN; committed splits of offline_train/splits)", "",
              "| k per class | splits run | top-1 per split | mean |", "|---|---|---|---|"]
    for k in (4, 8, 16, 32):
        vals = [top(f"fewshot_k{k}_s{s}") for s in range(5)]
        if k == ABLATION_K and vals[0] is None:
            vals[0] = top("ablation_proposed")  # the very same run (proposed, split 0, same budget)
        got = [v for v in vals if v is not None]
        per = ", ".join(_pct(v) for v in got) or "—"
        lines.append(f"| {k} | {len(got)} of 5 | {per} | {_pct(float(np.mean(got)) if got else None)} |")
    lines += ["", f"### Ablations (k = {ABLATION_K} split 0, same budget each)", "",
              "| variant | contrastive loss | PAA | top-1 |", "|---|---|---|---|"]
    lines[-2] = "| variant | contrastive loss | PAA (β, γ grid px) | top-1 |"
    for v, (mode, paa) in VARIANTS.items():
        lines.append(f"| {v} | {mode} | {'6, 2' if paa else 'no'} | {_pct(top(f'ablation_{v}'))} |")
    for f in sorted(out.glob("ablation_*_b*g*.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        aug = r.get("train_config", {}).get("augment", {})
        mode = r.get("train_config", {}).get("contrastive", "?")
        lines.append(f"| {r['variant']} | {mode} | {aug.get('beta')}, {aug.get('gamma')} | {_pct(r['top1'])} |")
    clips = read_result(out, "clip_selection")
    if clips:
        lines += ["", f"### Clip selection (K of {clips['num_clips']} clips per test video, top-1 %)", "",
                  "| K | " + " | ".join(clips["curves"]) + " |", "|---" * (len(clips["curves"]) + 1) + "|"]
        for i, k in enumerate(clips["ks"]):
            lines.append(f"| {k} | " + " | ".join(_pct(c[i]) for c in clips["curves"].values()) + " |")
    return "\n".join(lines) + "\n"
