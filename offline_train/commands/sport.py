"""Click commands of the generic (any sport) path: train heads and evaluate few-shot from labels.

``vpd-stream train recognizer|detector|nns-index --labels LABELS (--store STORE | --poses DIR)
--features pose|embedding:FEATURES --out HEAD`` and ``vpd-stream eval few-shot ...``;
``vpd-stream poses penn-action --out DIR`` converts Penn Action to the keypoint-clip format.
Without ``--labels`` the train commands keep their previous job: the default heads on Penn
Action (``offline_train.commands``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from vpd_stream.data_dir import data_folder
from vpd_stream.errors import ConfigError, VpdError

from .common import set_threads

ARCHS = ["bigru", "bilstm", "bigru_attn", "bilstm_attn", "cnn"]


def _command(name: str) -> str:
    return " ".join([f"vpd-stream {name}", *sys.argv[3:]])


def _source_options(f):
    f = click.option("--features", default="pose", show_default=True,
                     help="'pose' (26-d teacher joints) or 'embedding:FEATURES' (a folder from `vpd-stream embed`)")(f)
    f = click.option("--poses", default=None, help="a folder of keypoint clips (NAME.npz; see offline_train/keypoints.py)")(f)
    f = click.option("--store", default=None, help="a corpus store from `vpd-stream prepare`")(f)
    f = click.option("--labels", type=click.Path(path_type=Path), default=None,
                     help="span labels CSV: video,start_frame,end_frame,label (or start_s,end_s; or video,label)")(f)
    return f


def _dataset(labels: Path, store: str | None, poses: str | None, features: str):
    from ..clip_dataset import load_dataset

    return load_dataset(labels, store=store, poses=poses, features=features)


_penn_data_option = click.option("--data", type=click.Path(path_type=Path), default=None,
                                 help="Penn Action folder (without --labels)")
_threads_option = click.option("--threads", type=int, default=1, show_default=True)


def _actions(text: str | None) -> set[str] | None:
    return {a.strip() for a in text.split(",") if a.strip()} if text else None


@click.command("recognizer")
@_source_options
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="head path without suffix (default without --labels: plugins/weights/penn_recognizer)")
@_penn_data_option
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--arch", type=click.Choice(ARCHS), default="bigru")
@_threads_option
@click.option("--augment", is_flag=True, help="Penn Action: teacher-like augmentation (joint noise, dropped joints, speed)")
@click.pass_context
def train_recognizer(ctx, labels, store, poses, features, out, data, epochs, arch, threads, augment) -> None:
    """A recognizer of the labels' classes (or, without --labels, the 15-class Penn Action one)."""
    set_threads(threads)
    if labels is None:
        from offline_train.commands import heads  # not `from .commands`: no cycle

        ctx.invoke(heads.train_recognizer, data=data, out=out, epochs=epochs, arch=arch, threads=threads,
                   augment=augment)
        return
    if out is None:
        raise ConfigError("--out HEAD is needed with --labels")
    from ..sport_heads import train_recognizer_head

    train_recognizer_head(_dataset(labels, store, poses, features), out, _command("train recognizer"),
                          epochs=epochs, arch=arch, log=lambda m: click.echo(m, err=True))


@click.command("detector")
@_source_options
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="head path without suffix (default without --labels: plugins/weights/penn_swing_detector)")
@click.option("--action", default=None, help="labels that are the action (comma-separated; default: every label)")
@_penn_data_option
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--folds", type=int, default=5, show_default=True, help="ensemble size (k-fold cross-validation)")
@_threads_option
@click.pass_context
def train_detector(ctx, labels, store, poses, features, out, action, data, steps, folds, threads) -> None:
    """A detector of the labelled spans, its event threshold chosen on its validation folds."""
    from ..action_detection import DetectorTrainConfig

    set_threads(threads)
    if labels is None:
        from offline_train.commands import heads  # not `from .commands`: no cycle

        ctx.invoke(heads.train_detector, data=data, out=out, steps=steps, folds=folds, threads=threads)
        return
    if out is None:
        raise ConfigError("--out HEAD is needed with --labels")
    from ..sport_heads import train_detector_head

    train_detector_head(_dataset(labels, store, poses, features), out, _command("train detector"), _actions(action),
                        DetectorTrainConfig(steps=steps, folds=folds), log=lambda m: click.echo(m, err=True))


@click.command("nns-index")
@_source_options
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="index path (NAME.safetensors + NAME.json); the recognizer's `index` option")
@_penn_data_option
@_threads_option
@click.option("--storage", type=click.Choice(["float32", "float16", "int8"]), default="float32", show_default=True,
              help="Penn Action index: the features on disk (int8 for the committed default)")
@click.pass_context
def train_nns_index(ctx, labels, store, poses, features, out, data, threads, storage) -> None:
    """An NNS-DTW index of the labelled spans (or, without --labels, of Penn Action's train clips)."""
    set_threads(threads)
    if labels is None:  # the Penn Action index; --features names one of its feature sets (default: its own)
        from offline_train.commands import heads  # not `from .commands`: no cycle

        kwargs = {} if features == "pose" else {"features": features}
        ctx.invoke(heads.train_nns_index, data=data, out=out, threads=threads, storage=storage, **kwargs)
        return
    from ..sport_heads import build_nns_head

    build_nns_head(_dataset(labels, store, poses, features), out, _command("train nns-index"),
                   log=lambda m: click.echo(m, err=True))


@click.command("few-shot")
@click.option("--labels", type=click.Path(path_type=Path), required=True, help="span labels CSV")
@click.option("--store", default=None, help="a corpus store from `vpd-stream prepare`")
@click.option("--poses", default=None, help="a folder of keypoint clips")
@click.option("--features", default="pose", show_default=True,
              help="comma-separated feature sets: pose, embedding:FEATURES, ...")
@click.option("--task", type=click.Choice(["recognition", "detection", "retrieval"]), default="detection",
              show_default=True)
@click.option("--k", "ks", default="2,4,8,16,all", show_default=True,
              help="training clips (detection) or examples per class (recognition, retrieval)")
@click.option("--splits", type=int, default=5, show_default=True, help="random draws per k (one for 'all')")
@click.option("--folds", type=int, default=5, show_default=True, help="cross-validation folds over videos")
@click.option("--splits-file", type=click.Path(path_type=Path), default=None,
              help="the saved splits (default: LABELS.fewshot-TASK.json beside the labels); reused when it exists")
@click.option("--action", default=None, help="detection: labels that are the action (default: every label)")
@click.option("--steps", type=int, default=100, show_default=True, help="detection: training steps per model")
@click.option("--ensemble", type=int, default=5, show_default=True, help="detection: models per ensemble (k-fold)")
@click.option("--epochs", type=int, default=20, show_default=True, help="recognition: BiGRU epochs")
@click.option("--no-bigru", is_flag=True, help="recognition: NNS-DTW only")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help="the Markdown tables (and OUT.png, the plot)")
@_threads_option
def eval_few_shot(labels, store, poses, features, task, ks, splits, folds, splits_file, action, steps, ensemble,
                  epochs, no_bigru, out, threads) -> None:
    """Few-shot tables per feature set and k: accuracy, AP at tIoU 0.3-0.7, or precision@k."""
    import time

    from ..action_detection import DetectorTrainConfig
    from ..evaluate_penn import report_header
    from ..fewshot_eval import FewShotOptions, markdown, parse_ks, plot, run_fewshot
    from ..labels import load_labels

    set_threads(threads)
    t0 = time.time()
    lab = load_labels(labels)
    specs = [s.strip() for s in features.split(",") if s.strip()]
    datasets = [_dataset(lab, store, poses, s) for s in specs]
    opts = FewShotOptions(task=task, ks=parse_ks(ks), splits=splits, folds=folds, bigru=not no_bigru,
                          actions=_actions(action), detector=DetectorTrainConfig(steps=steps, folds=ensemble),
                          epochs=epochs)
    path = splits_file or labels.with_name(f"{labels.stem}.fewshot-{task}.json")
    log = lambda m: click.echo(m, err=True)
    report = run_fewshot(datasets, path, opts, log)
    text = report_header(_command("eval few-shot")) + f"Splits: `{path}`; run took {time.time() - t0:.0f} s.\n\n" \
        + markdown(report, task)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        png = plot(report, task, out.with_suffix(".png"))
        import json

        out.with_suffix(".json").write_text(json.dumps({"command": _command("eval few-shot"), **report}, indent=1) + "\n",
                                            encoding="utf-8")  # the per-split metrics, for merging runs
        log(f"wrote {out}, {png} and {out.with_suffix('.json')}")
    click.echo(text)


@click.group("poses")
def poses_group() -> None:
    """Keypoint datasets without video (the per-clip format of offline_train/keypoints.py)."""


@poses_group.command("penn-action")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Penn Action folder (with labels/)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="folder for NAME.npz and labels.csv")
@click.option("--fps", type=float, default=25.0, show_default=True, help="resample the 30 fps clips to this rate")
def poses_penn(data, out, fps) -> None:
    """Penn Action as keypoint clips (visibility 0 -> score 0) and labels.csv (video,label,split,view)."""
    from ..penn_action import export_poses

    n, labels = export_poses(data_folder(data, "penn_action", "Penn Action"), out, fps)
    click.echo(f"wrote {n} clips to {out} and {labels}")


def main() -> None:
    """``python -m offline_train.sport_commands train|eval|poses ...`` (the same commands as vpd-stream's)."""  # noqa: D401
    group = click.Group(commands={"train": click.Group("train", commands={c.name: c for c in (
        train_recognizer, train_detector, train_nns_index)}),
        "eval": click.Group("eval", commands={"few-shot": eval_few_shot}), "poses": poses_group})
    try:
        group(standalone_mode=True)
    except VpdError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None

