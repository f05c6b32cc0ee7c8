"""Click commands of the heads: `eval penn-action`, `train recognizer|detector|nns-index`.

The lead registers the groups ``eval_group`` and ``train_group`` in vpd_stream/cli.py as
``vpd-stream eval ...`` and ``vpd-stream train ...``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from vpd_stream.errors import VpdError


def _default_data() -> Path:
    env = os.environ.get("VPD_DATA_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "penn_action"


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


@click.group("eval")
def eval_group() -> None:
    """Evaluate heads on real benchmarks."""


@eval_group.command("penn-action")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Penn Action folder (with labels/); default $VPD_DATA_DIR/penn_action or ../shared/data/penn_action")
@click.option("--features", type=click.Choice(["pose2d"]), default="pose2d", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="write the Markdown tables here")
@click.option("--quick", is_flag=True, help="a small subset (about a minute); numbers not comparable")
@click.option("--no-detection", is_flag=True, help="skip the detection benchmark")
@click.option("--no-bigru", is_flag=True, help="skip the few-shot BiGRU training (NNS-DTW only)")
@click.option("--splits", type=int, default=5, show_default=True, help="few-shot splits per k to run (of the 5 fixed ones)")
@click.option("--threads", type=int, default=1, show_default=True)
def eval_penn(data: Path | None, features: str, out: Path | None, quick: bool, no_detection: bool,
              no_bigru: bool, splits: int, threads: int) -> None:
    """NNS-DTW, few-shot BiGRU/NNS, retrieval, cross-view retrieval and swing detection."""
    from .evaluate_penn import EvalOptions, report_header, run_penn_eval

    _threads(threads)
    opts = EvalOptions(data=data or _default_data(), features=features, quick=quick, detection=not no_detection,
                       bigru=not no_bigru, splits=splits)
    text = run_penn_eval(opts, log=lambda m: click.echo(m, err=True))
    command = "vpd-stream eval penn-action " + " ".join(sys.argv[3:]) if len(sys.argv) > 2 else "vpd-stream eval penn-action"
    text = report_header(command) + "\n" + text
    if out is not None:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    click.echo(text)


@click.group("train")
def train_group() -> None:
    """Train the default heads the detector and recognizer plugins load."""


@train_group.command("recognizer")
@click.option("--data", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="weights path without suffix (default: plugins/weights/penn_recognizer)")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--arch", type=click.Choice(["bigru", "bilstm", "bigru_attn", "bilstm_attn", "cnn"]), default="bigru")
@click.option("--threads", type=int, default=1, show_default=True)
def train_recognizer_cmd(data: Path | None, out: Path | None, epochs: int, arch: str, threads: int) -> None:
    """15-class Penn Action recognizer on normalized 2D joints (official train split)."""
    from .recognition import train_default_recognizer

    _threads(threads)
    train_default_recognizer(data or _default_data(), out, epochs, arch, " ".join(["vpd-stream train recognizer", *sys.argv[3:]]))


@train_group.command("detector")
@click.option("--data", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="weights path without suffix (default: plugins/weights/penn_swing_detector)")
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--folds", type=int, default=5, show_default=True, help="ensemble size (k-fold cross-validation)")
@click.option("--threads", type=int, default=1, show_default=True)
def train_detector_cmd(data: Path | None, out: Path | None, steps: int, folds: int, threads: int) -> None:
    """Swing detector (tennis/baseball/golf swings vs the other Penn classes), 5-fold ensemble."""
    from .action_detection import train_default_detector

    _threads(threads)
    train_default_detector(data or _default_data(), out, steps, folds, " ".join(["vpd-stream train detector", *sys.argv[3:]]))


@train_group.command("nns-index")
@click.option("--data", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="index path (NAME.safetensors + NAME.json); point the recognizer's `index` option at it")
@click.option("--features", type=click.Choice(["pose2d"]), default="pose2d", show_default=True)
def train_nns_index_cmd(data: Path | None, out: Path, features: str) -> None:
    """NNS-DTW index of the Penn Action official train clips, for `recognizer` with method = "nns"."""
    from .recognition import build_penn_nns_index

    path = build_penn_nns_index(data or _default_data(), out, features,
                                " ".join(["vpd-stream train nns-index", *sys.argv[3:]]))
    click.echo(f"wrote {path} and {path.with_suffix('.json')}")


def main() -> None:  # `python -m offline_train.commands eval penn-action ...` until the CLI registers us
    group = click.Group(commands={"eval": eval_group, "train": train_group})
    try:
        group(standalone_mode=True)
    except VpdError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
