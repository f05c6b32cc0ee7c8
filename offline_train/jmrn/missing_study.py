"""How JMRN's heatmaps should treat missing joints (issue 15): a measurement on Penn Action.

Penn's ``visibility == 0`` joints keep stale coordinates (about 65 % of them the previous
frame's). Each variant below renders every clip, trains the full-split JMRN with the
committed budget (``evaluate.FULL_EPOCHS``, the CPU preset) for a few seeds, and reports
top-1 on the 1,068 official test clips:

- ``stale``: every finite joint drawn, invisible ones too (the weights before issue 15);
- ``empty``: missing joints not drawn, the crop box from the present joints only
  (``clip_heatmaps`` with the one rule: the product);
- ``empty_box_all``: missing joints not drawn, but the crop box around every finite joint
  (stale ones included): separates the box from the drawing;
- ``interp``: a missing joint's position interpolated linearly in time between the
  frames where it is present (held before the first / after the last); a joint never
  present stays empty;
- ``hip``: a missing joint drawn at the present hips' centre (the 26-d features'
  convention for a missing joint).

Every variant but ``empty`` is built from the module's own pieces (``athlete_box``,
``to_grid``, ``aggregate``) or by editing the keypoints before ``clip_heatmaps``.

    python -m offline_train.jmrn.missing_study --variants stale,empty --seeds 0,1,2 --out runs/jmrn_missing
    python -m offline_train.jmrn.missing_study --variants stale,empty --shots 4 --splits 0,1,2,3,4
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from vpd_stream.heatmaps import HeatmapConfig, aggregate, athlete_box, clip_heatmaps, to_coco13, to_grid
from vpd_stream.skeleton import HIPS, missing_joints

from .evaluate import CPU_HEATMAP, FEWSHOT_OVER, FULL_EPOCHS, fewshot_ids, load_penn_maps, run_experiment


def render_stale(kp: np.ndarray, hm: HeatmapConfig) -> np.ndarray:
    return clip_heatmaps(kp, replace(hm, min_score=0.0))


def render_empty_box_all(kp: np.ndarray, hm: HeatmapConfig) -> np.ndarray:
    kp = to_coco13(kp)
    finite = np.isfinite(kp[..., :2]).all(-1)
    present = ~missing_joints(kp, hm.min_score)
    xy = np.where(finite[..., None], kp[..., :2], 0.0).astype(np.float32)
    box = athlete_box(xy, finite, hm.pad)
    return aggregate(to_grid(xy, box, hm.height, hm.width), present.astype(np.float32), hm)


def interpolate_missing(kp: np.ndarray, min_score: float) -> np.ndarray:
    """(T, 13, 3): each missing joint moved to its linear interpolation in time (score 1)."""
    kp = to_coco13(kp).copy()
    present = ~missing_joints(kp, min_score)
    t = np.arange(len(kp))
    for j in range(kp.shape[1]):
        ok = present[:, j]
        if ok.all() or not ok.any():
            continue
        for c in range(2):
            kp[~ok, j, c] = np.interp(t[~ok], t[ok], kp[ok, j, c])
        kp[~ok, j, 2] = 1.0
    return kp


def render_interp(kp: np.ndarray, hm: HeatmapConfig) -> np.ndarray:
    return clip_heatmaps(interpolate_missing(kp, hm.min_score), hm)


def render_hip(kp: np.ndarray, hm: HeatmapConfig) -> np.ndarray:
    kp = to_coco13(kp).copy()
    present = ~missing_joints(kp, hm.min_score)
    hips = kp[:, list(HIPS), :2]
    hp = present[:, list(HIPS)]
    n = hp.sum(1)
    centre = (np.where(hp[..., None], hips, 0.0).sum(1) / np.maximum(n, 1)[:, None])
    fill = ~present & (n > 0)[:, None]
    kp[..., :2] = np.where(fill[..., None], centre[:, None], kp[..., :2])
    kp[..., 2] = np.where(fill, 1.0, kp[..., 2])
    return clip_heatmaps(kp, hm)


RENDERERS = {"stale": render_stale, "empty": clip_heatmaps, "empty_box_all": render_empty_box_all,
             "interp": render_interp, "hip": render_hip}


def table(out: Path) -> str:
    """Markdown: top-1 per variant, mean ± std over the seeds (or few-shot splits) found."""
    rows = ["| variant | runs | top-1 per run (%) | mean ± std |", "|---|---|---|---|"]
    groups: dict[str, list[tuple[str, float]]] = {}
    for f in sorted(out.glob("*.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        if "top1" not in r:
            continue
        variant, _, run = r["name"].rpartition("_")
        groups.setdefault(variant, []).append((run, 100 * r["top1"]))
    for variant, runs in groups.items():
        vals = np.array([v for _, v in sorted(runs)])
        rows.append(f"| {variant} | {len(vals)} | {', '.join(f'{v:.1f}' for v in vals)} | "
                    f"{vals.mean():.1f} ± {vals.std(ddof=1) if len(vals) > 1 else 0.0:.1f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    from vpd_stream.data_dir import data_folder

    from ..commands.common import set_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--variants", default=",".join(RENDERERS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=FULL_EPOCHS)
    ap.add_argument("--out", default="runs/jmrn_missing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shots", type=int, default=None,
                    help="few-shot k: train on the committed splits (--splits) instead of the full split")
    ap.add_argument("--splits", default="0")
    ap.add_argument("--min-steps", type=int, default=80, help="(--shots) optimizer steps at least")
    ap.add_argument("--table", action="store_true", help="print the results found under --out and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(table(Path(args.out)), end="")
        return
    set_threads(args.threads)
    root = data_folder(args.data, "penn_action", "Penn Action (the folder with labels/)")
    out = Path(args.out)
    for variant in args.variants.split(","):
        fn = RENDERERS[variant]
        data = load_penn_maps(root, CPU_HEATMAP, render=(f"missing_study/{variant}", fn))
        if args.shots is None:
            runs = [(f"{variant}_s{seed}", None, {"epochs": args.epochs, "seed": seed})
                    for seed in (int(s) for s in args.seeds.split(","))]
        else:  # the few-shot protocol of `eval jmrn --part fewshot --min-steps N`
            runs = [(f"{variant}_k{args.shots}_split{split}", fewshot_ids(data, args.shots, split),
                     {**FEWSHOT_OVER, "min_steps": args.min_steps}) for split in (int(s) for s in args.splits.split(","))]
        for name, ids, over in runs:
            if (out / f"{name}.json").is_file():
                continue
            _, res = run_experiment(data, name, out, "proposed", train_ids=ids, train_over=over, log=None)
            print(json.dumps({"name": name, "top1": round(res["top1"], 4), "train_top1": round(res["train_top1"], 4),
                              "train_seconds": res["train_seconds"]}), flush=True)


if __name__ == "__main__":
    main()
