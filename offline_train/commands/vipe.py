"""VIPE*'s commands: ``train_vipe`` (``vpd-stream train vipe``) and ``eval_vipe``
(``vpd-stream eval vipe``); ``train_vipe_legacy`` is the old ``vpd-stream train-vipe``
spelling (its ``--data`` named the pose source), kept hidden for one release."""
from __future__ import annotations

import time
from pathlib import Path

import click

from vpd_stream.command_options import out_option
from vpd_stream.data_dir import data_folder
from vpd_stream.errors import ConfigError

from .common import set_threads

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = _REPO / "vpd_stream" / "models" / "weights" / "vipe_default.safetensors"
DEFAULT_CACHE = _REPO / ".cache" / "vipe"
POSES = click.Choice(["msr", "synthetic", "both"])
POSES_HELP = "3D poses to train on: MSR Action3D (subjects 1-8), procedural poses, or both."
MSR_HELP = "MSR Action3D folder (with skeleton_real3d/); default $VPD_DATA_DIR/msr_action3d."
OUT_HELP = "Weights file (.safetensors; a .json sidecar is written next to it)."


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _name_path(spec: str, option: str, example: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"{option} takes NAME=PATH (e.g. {example}), got {spec!r}")
    return name, path


def _training_options(f):
    for option in reversed([
        click.option("--steps", type=int, default=1500, show_default=True),
        click.option("--batch", "batch_poses", type=int, default=256, show_default=True,
                     help="3D poses per step (each rendered from two cameras)."),
        click.option("--dim", type=int, default=32, show_default=True, help="Embedding size."),
        click.option("--vflip", is_flag=True, help="Save as the 64-d model (embedding of the pose + of its vertical flip)."),
        click.option("--inputs", type=click.Choice(["torso", "box"]), default="box", show_default=True,
                     help="2D normalization fed to the encoder: the VPD torso one or the box of the present joints."),
        click.option("--drop", "drop_prob", type=float, default=0.2, show_default=True,
                     help="Per-joint probability that a training view misses a joint (Penn Action: 22 %)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--threads", type=int, default=1, show_default=True, help="Torch threads."),
        click.option("--quick", is_flag=True, help="A tiny run (60 steps) to check the setup."),
    ]):
        f = option(f)
    return f


@click.command("vipe")
@click.option("--poses", type=POSES, default="both", show_default=True, help=POSES_HELP)
@click.option("--data", "msr_dir", type=click.Path(file_okay=False), default=None, help=MSR_HELP)
@out_option(type=click.Path(dir_okay=False), default=str(DEFAULT_WEIGHTS), help=OUT_HELP)
@_training_options
def train_vipe(poses: str, msr_dir: str | None, out: str, **training) -> None:
    """Train the VIPE* view-invariant pose embedding and save it (safetensors + JSON)."""
    _train(poses, msr_dir, out, **training)


@click.command("train-vipe", hidden=True)
@click.option("--data", "poses", type=POSES, default="both", show_default=True, help=POSES_HELP)
@click.option("--msr", "msr_dir", type=click.Path(file_okay=False), default=None, help=MSR_HELP)
@out_option(type=click.Path(dir_okay=False), default=str(DEFAULT_WEIGHTS), help=OUT_HELP)
@_training_options
def train_vipe_legacy(poses: str, msr_dir: str | None, out: str, **training) -> None:
    """Old spelling of `vpd-stream train vipe` (--data is now --poses, --msr is now --data)."""
    _train(poses, msr_dir, out, **training)


def _train(poses: str, msr_dir: str | None, output: str, steps: int, batch_poses: int, dim: int, vflip: bool,
           inputs: str, drop_prob: float, seed: int, threads: int, quick: bool) -> None:
    from vpd_stream.models.vipe import VipeConfig

    from ..vipe.cameras import CameraConfig
    from ..vipe.train import TrainConfig, train_and_save

    if not 0.0 <= drop_prob < 1.0:
        raise ConfigError(f"--drop must be in [0, 1), got {drop_prob}")
    if steps < 1 or batch_poses < 2:
        raise ConfigError("--steps must be >= 1 and --batch >= 2")
    try:  # needed to train on MSR; with synthetic poses only, it still validates when present
        msr: Path | None = data_folder(msr_dir, "msr_action3d", "MSR Action3D")
    except ConfigError:
        if poses != "synthetic" or msr_dir is not None:
            raise
        msr = None
    cfg = TrainConfig(data=poses, steps=60 if quick else steps, batch_poses=batch_poses, seed=seed, threads=threads,
                      val_every=30 if quick else 500, val_poses=200 if quick else 1000,
                      model=VipeConfig(dim=dim, vflip=vflip, inputs=inputs), cameras=CameraConfig(drop_prob=drop_prob))
    summary = train_and_save(cfg, msr, Path(output), log=click.echo)
    last = summary["history"][-1]
    base = summary["baseline_pose2d"]
    click.echo(f"trained in {summary['train_seconds']:.0f} s; cross-view hit (held out): "
               + ", ".join(f"{k} VIPE* {last[k + '_xview_hit']:.3f} vs 2D joints {v:.3f}" for k, v in base.items()))
    click.echo(f"wrote {output} and {Path(output).with_suffix('.json').name}")


@click.command("vipe")
@click.option("--model", "models", multiple=True, metavar="NAME=PATH",
              help="A VIPE* model to evaluate (repeatable); default: the committed one, named 'vipe'.")
@click.option("--part", type=click.Choice(["all", "penn", "lunge", "students"]), default="all", show_default=True,
              help="'students': the lunge table on a corpus store (--store) for the teachers and for distilled "
                   "students' `vpd-stream embed` features (--features); not part of 'all'.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="The data folder holding penn_action/ and videos/ (lunge_cam01..04.mp4); default $VPD_DATA_DIR "
                   "or ../shared/data.")
@click.option("--penn", "penn_dir", type=click.Path(file_okay=False), default=None, hidden=True,
              help="Penn Action folder (with labels/), instead of DATA/penn_action.")
@click.option("--videos", "videos_dir", type=click.Path(file_okay=False), default=None, hidden=True,
              help="Folder with lunge_cam01..04.mp4, instead of DATA/videos.")
@click.option("--subset", type=int, default=1, show_default=True,
              help="Keep every N-th Penn test clip (smoke runs; numbers not comparable).")
@click.option("--cache", type=click.Path(file_okay=False), default=str(DEFAULT_CACHE), show_default=True,
              help="Where the lunge BlazePose keypoints and the Penn DTW costs are cached.")
@click.option("--store", "store", type=click.Path(file_okay=False), default=None,
              help="--part students: a corpus store holding lunge_cam01..04 (from `vpd-stream prepare`).")
@click.option("--features", "features", multiple=True, metavar="NAME=DIR",
              help="--part students: `vpd-stream embed` output on that store (repeatable), e.g. VI-VPD=feat/vi.")
@click.option("--tolerance", type=int, default=None,
              help="Instant-hit tolerance in frames (default: 3 for --part lunge, 2 for students at 30 fps).")
@out_option(type=click.Path(dir_okay=False), help="Write the Markdown here too.")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch threads.")
def eval_vipe(models: tuple[str, ...], part: str, data: str | None, penn_dir: str | None, videos_dir: str | None,
              subset: int, cache: str, store: str | None, features: tuple[str, ...], tolerance: int | None,
              out: str | None, threads: int) -> None:
    """Penn Action NNS-DTW / few-shot / cross-view tables and the lunge view-invariance table."""
    from vpd_stream.models.vipe import load_vipe

    from ..vipe import evaluate as ev

    set_threads(threads)
    named = [(name, Path(path)) for name, path in (_name_path(s, "--model", "vipe=weights.safetensors")
                                                   for s in models or (f"vipe={DEFAULT_WEIGHTS}",))]
    feature_dirs = [_name_path(s, "--features", "VI-VPD=features/") for s in features]
    if part == "students" and (store is None or not feature_dirs):
        raise ConfigError("--part students needs --store STORE and at least one --features NAME=DIR")
    loaded = [(name, load_vipe(path)) for name, path in named]
    t0 = time.perf_counter()
    sections = ["Models: " + ", ".join(f"`{n}` = {p.name}" for n, p in named) + "."]
    if part in ("all", "penn"):
        root = data_folder(penn_dir or _under(data, "penn_action"), "penn_action", "Penn Action")
        train, test, splits = ev.load_penn(root, subset)
        # DTW costs are cached per feature set (weights sha256) so a long evaluation can be
        # run one model per call and assembled at the end.
        cdir = Path(cache)
        results = [ev.penn_evaluate(train, test, ev.pose2d_sequences(train), ev.pose2d_sequences(test), splits,
                                    cache=cdir / f"penn_costs_pose2d_s{subset}.npz")]
        click.echo(f"pose2d: NNS top-1 {results[-1].nns_top1:.4f} ({results[-1].seconds:.0f} s)")
        for (name, model), (_, path) in zip(loaded, named):
            key = _sha256(path)[:16]
            results.append(ev.penn_evaluate(train, test, ev.vipe_sequences(model, train, name),
                                            ev.vipe_sequences(model, test, name), splits,
                                            cache=cdir / f"penn_costs_vipe_{key}_s{subset}.npz"))
            click.echo(f"{name}: NNS top-1 {results[-1].nns_top1:.4f} ({results[-1].seconds:.0f} s)")
        sections += ["### Penn Action" + (f" (every {subset}th test clip: smoke run)" if subset > 1 else ""), "",
                     ev.penn_markdown(results, len(train), len(test))]
    if part in ("all", "lunge"):
        vids = data_folder(videos_dir or _under(data, "videos"), "videos", "the lunge videos")
        poses = ev.lunge_poses(vids, Path(cache) / "lunge_poses.npz", log=click.echo)
        f2d, f2d_flip, valid = ev.lunge_features(poses, None)
        rows = [ev.view_invariance("2D joints", f2d, valid), ev.view_invariance("2D joints, best of flip", f2d, valid,
                                                                                 flipped=f2d_flip)]
        for name, model in loaded:
            f, ff, _ = ev.lunge_features(poses, model)
            rows.append(ev.view_invariance(name, f, valid))
            rows.append(ev.view_invariance(f"{name}, best of flip", f, valid, flipped=ff))
        sections += ["### Four-camera lunges: view invariance", "", ev.lunge_markdown(rows, poses.shape[1],
                                                                                      tolerance or 3)]
    if part == "students":
        tol = tolerance if tolerance is not None else 2
        lunges = ev.store_lunges(store)
        valid = lunges.valid
        rows = []

        def add(name: str, f, ff) -> None:
            rows.append((ev.view_invariance(name, f, valid, tol), f.shape[-1]))
            rows.append((ev.view_invariance(f"{name}, best of flip", f, valid, tol, flipped=ff), f.shape[-1]))

        f2d, f2d_flip, _ = ev.lunge_features(lunges.keypoints, None)
        add("2D joints (teacher keypoints)", f2d, f2d_flip)
        for name, model in loaded:
            f, ff, _ = ev.lunge_features(lunges.keypoints, model)
            add(f"VIPE* `{name}` (teacher keypoints)", f, ff)
        for name, fdir in feature_dirs:
            f, ff = ev.store_lunge_features(lunges, fdir)
            add(name, f, ff)
        sections += ["### Four-camera lunges from the corpus store: teachers and distilled students", "",
                     ev.store_lunge_markdown(rows, lunges, tol)]
    sections.append(f"Evaluation took {time.perf_counter() - t0:.0f} s.")
    text = "\n".join(sections) + "\n"
    click.echo(text)
    if out:
        Path(out).write_text(text, encoding="utf-8")


def _under(data: str | None, sub: str) -> Path | None:
    return Path(data) / sub if data else None
