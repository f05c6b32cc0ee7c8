"""JMRN's commands: ``train_jmrn`` (``vpd-stream train jmrn``) and ``eval_jmrn``
(``vpd-stream eval jmrn``; ``eval penn-action-jmrn`` is its old, hidden spelling).

``eval_jmrn`` runs one part of the Penn Action evaluation per call (each part is a few
minutes on 2 cores) and caches it under ``--out``; ``--part table`` assembles every cached
part into the Markdown tables (and the figures) without training anything.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from vpd_stream.command_options import out_option
from vpd_stream.data_dir import data_folder
from vpd_stream.errors import ConfigError

from .common import set_threads

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "plugins" / "weights" / "jmrn_default.safetensors"


def _data_root(data: str | None) -> Path:
    return data_folder(data, "penn_action", "Penn Action (the folder with labels/)")


@click.command("jmrn")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Penn Action folder (with labels/).")
@out_option(type=click.Path(dir_okay=False), help="Weights file (.safetensors; a .json sidecar is written next "
            "to it). Default: the bundled plugins/weights/jmrn_default.safetensors.")
@click.option("--variant", type=click.Choice(["proposed", "no_contrastive", "only_aug", "proposed_no_paa",
                                              "no_contrastive_no_paa"]), default="proposed", show_default=True)
@click.option("--epochs", type=int, default=None, help="Training epochs (default 5, as the bundled model).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quick", is_flag=True, help="A tiny run (a few clips, 1 epoch) to check the setup.")
@click.option("--threads", type=int, default=2, show_default=True)
def train_jmrn(data: str | None, out: str | None, variant: str, epochs: int | None, seed: int, quick: bool,
               threads: int) -> None:
    """Train JMRN on Penn Action's official train split and save it (safetensors + JSON)."""
    from dataclasses import asdict

    import numpy as np

    from vpd_stream.models.jmrn import save_jmrn

    from ..jmrn.evaluate import CPU_HEATMAP, FULL_EPOCHS, load_penn_maps, model_config, top1, train_config
    from ..jmrn.train import predict_logits, train_jmrn as fit
    from ..penn_action import CLASSES

    if out is None and quick:
        raise ConfigError("--quick trains a throw-away model: give it an -o/--out path (it must not replace the bundled weights)")
    output = out or str(DEFAULT_WEIGHTS)
    set_threads(threads)
    root = _data_root(data)
    data_maps = load_penn_maps(root, CPU_HEATMAP, limit=120 if quick else None)
    tr, te = np.flatnonzero(data_maps.train), np.flatnonzero(~data_maps.train)
    over = {"epochs": 1, "min_steps": 0, "batch_size": 16} if quick else {"epochs": FULL_EPOCHS}
    if epochs is not None:
        over["epochs"] = epochs
    tcfg = train_config(variant, seed=seed, **over)
    model, stats = fit(data_maps.maps[tr], data_maps.labels[tr], model_config(CPU_HEATMAP), tcfg, log=click.echo)
    acc = top1(predict_logits(model, data_maps.maps[te]), data_maps.labels[te]) if len(te) else float("nan")
    click.echo(f"test top-1 {acc:.4f} on {len(te)} clips")
    meta = {"variant": variant, "dataset": "penn_action (official train split, 25 fps)",
            "test_top1": round(acc, 4), "test_clips": int(len(te)), "epochs": stats["epochs"],
            "train_seconds": stats["train_seconds"], "seed": seed, "quick": quick,
            "train_config": json.loads(json.dumps(asdict(tcfg), default=list))}
    # Penn names joints from the viewer's side, the stream's teacher from the person's: save
    # the exact equivalent for the person's own sides (offline_train.jmrn.sides).
    from vpd_stream.models.jmrn import permute_joints
    from vpd_stream.skeleton import FLIP_PERM

    meta["penn_sides"] = "anatomical"
    path = save_jmrn(output, permute_joints(model, FLIP_PERM), asdict(CPU_HEATMAP), list(CLASSES), meta)
    click.echo(f"wrote {path} and {path.with_suffix('.json').name}")


PARTS = ("full", "ablation", "fewshot", "bigru", "fusion", "clips", "table")


@click.command("jmrn")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Penn Action folder (with labels/).")
@click.option("-o", "--out", type=click.Path(file_okay=False), default="runs/jmrn", show_default=True,
              help="Where each part's results are cached.")
@click.option("--part", type=click.Choice(PARTS), default="table", show_default=True,
              help="What to run: one training per call keeps each job short.")
@click.option("--variant", default="proposed", show_default=True, help="Ablation variant (--part ablation).")
@click.option("-k", "--shots", type=int, default=None, help="Few-shot k (--part fewshot).")
@click.option("--split", type=int, default=0, show_default=True, help="Few-shot split (--part fewshot).")
@click.option("--extra-logits", type=click.Path(dir_okay=False), multiple=True,
              help="(--part fusion) .npz with train_logits and test_logits of another modality, "
                   "rows in the official split's order; may repeat.")
@click.option("--results", type=click.Path(dir_okay=False), default="jmrn-results.md", show_default=True,
              help="(--part table) Markdown file to write.")
@click.option("--min-steps", type=int, default=None,
              help="(--part ablation/fewshot) optimizer steps at least (default: the preset's 30).")
@click.option("--beta", type=int, default=None, help="(--part ablation) PAA global shift, grid pixels (default 6).")
@click.option("--gamma", type=int, default=None, help="(--part ablation) PAA group shift, grid pixels (default 2).")
@click.option("--bigru-weights", type=click.Path(dir_okay=False), default=None,
              help="(--part bigru) use this trained BiGRU head instead of training one.")
@click.option("--quick", is_flag=True, help="Few clips, one epoch: checks the wiring only.")
@click.option("--threads", type=int, default=2, show_default=True)
def eval_jmrn(data, out, part, variant, shots, split, extra_logits, results, min_steps, beta, gamma, bigru_weights,
              quick, threads) -> None:
    """Penn Action evaluation of JMRN: full, ablations, few-shot, fusion, clip selection."""
    from ..jmrn import evaluate

    set_threads(threads)
    evaluate.run_part(_data_root(data), Path(out), part, variant=variant, shots=shots, split=split,
                         extra_logits=[Path(p) for p in extra_logits], results=Path(results),
                         min_steps=min_steps, beta=beta, gamma=gamma, quick=quick, log=click.echo,
                         bigru_weights=Path(bigru_weights) if bigru_weights else None)
