"""The heads' commands: ``train recognizer|detector|nns-index`` and ``eval penn-action``."""
from __future__ import annotations

from pathlib import Path

import click

from vpd_stream.data_dir import data_folder

from .common import command_line, set_threads

DATA_HELP = "Penn Action folder (with labels/); default $VPD_DATA_DIR/penn_action or ../shared/data/penn_action."


def _penn(data: Path | None) -> Path:
    return data_folder(data, "penn_action", "Penn Action")


def data_option(f):
    return click.option("--data", type=click.Path(path_type=Path), default=None, help=DATA_HELP)(f)


def threads_option(default: int = 1):
    return click.option("--threads", type=int, default=default, show_default=True, help="Torch threads.")


@click.command("penn-action")
@data_option
@click.option("--features", type=click.Choice(["pose2d", "pose2d_box", "pose2d_stale", "vipe", "vipe_box"]), default="pose2d_box", show_default=True)
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Write the Markdown tables here too.")
@click.option("--quick", is_flag=True, help="a small subset (about a minute); numbers not comparable")
@click.option("--no-detection", is_flag=True, help="skip the detection benchmark")
@click.option("--no-bigru", is_flag=True, help="skip the few-shot BiGRU training (NNS-DTW only)")
@click.option("--splits", type=int, default=5, show_default=True, help="few-shot splits per k to run (of the 5 fixed ones)")
@threads_option()
def eval_penn(data: Path | None, features: str, out: Path | None, quick: bool, no_detection: bool,
              no_bigru: bool, splits: int, threads: int) -> None:
    """NNS-DTW, few-shot BiGRU/NNS, retrieval, cross-view retrieval and swing detection."""
    from ..evaluate_penn import EvalOptions, report_header, run_penn_eval

    set_threads(threads)
    opts = EvalOptions(data=_penn(data), features=features, quick=quick, detection=not no_detection,
                       bigru=not no_bigru, splits=splits)
    text = run_penn_eval(opts, log=lambda m: click.echo(m, err=True))
    text = report_header(command_line()) + "\n" + text
    if out is not None:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    click.echo(text)


@click.command("recognizer")
@data_option
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="weights path without suffix (default: plugins/weights/penn_recognizer)")
@click.option("--epochs", type=int, default=60, show_default=True)
@click.option("--arch", type=click.Choice(["bigru", "bilstm", "bigru_attn", "bilstm_attn", "cnn"]), default="bigru")
@click.option("--augment", is_flag=True, help="teacher-like augmentation (joint noise, dropped joints, speed)")
@threads_option()
def train_recognizer(data: Path | None, out: Path | None, epochs: int, arch: str, augment: bool, threads: int) -> None:
    """15-class Penn Action recognizer on normalized 2D joints (official train split; Penn's
    sides swapped to the person's own, as the stream's)."""
    from ..recognition import train_default_recognizer

    set_threads(threads)
    train_default_recognizer(_penn(data), out, epochs, arch, command_line(), augment=augment)


@click.command("detector")
@data_option
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="weights path without suffix (default: plugins/weights/penn_swing_detector)")
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--folds", type=int, default=5, show_default=True, help="ensemble size (k-fold cross-validation)")
@threads_option()
def train_detector(data: Path | None, out: Path | None, steps: int, folds: int, threads: int) -> None:
    """Swing detector (tennis/baseball/golf swings vs the other Penn classes), 5-fold ensemble."""
    from ..action_detection import train_default_detector

    set_threads(threads)
    train_default_detector(_penn(data), out, steps, folds, command_line())


@click.command("nns-index")
@data_option
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="index path (NAME.safetensors + NAME.json); point the recognizer's `index` option at it")
@click.option("--features", type=click.Choice(["pose2d", "pose2d_box", "pose2d_stale"]), default="pose2d_box", show_default=True)
@click.option("--storage", type=click.Choice(["float32", "float16", "int8"]), default="float32", show_default=True,
              help="the features on disk (int8: a quarter of the file, the committed default index)")
@threads_option()
def train_nns_index(data: Path | None, out: Path, features: str, storage: str, threads: int) -> None:
    """NNS-DTW index of the Penn Action official train clips, for `recognizer` with method = "nns"
    and for its span events (`span_index`)."""
    from ..recognition import build_penn_nns_index

    set_threads(threads)
    path = build_penn_nns_index(_penn(data), out, features, command_line(), storage=storage)
    click.echo(f"wrote {path} and {path.with_suffix('.json')}")
