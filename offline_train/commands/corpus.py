"""``vpd-stream prepare``, ``distill`` and ``embed``: the offline path that makes the student."""
from __future__ import annotations

import sys

import click

from .common import setup_logging
from .dataclass_options import DeferredParamsCommand, dataclass_params


@click.command()
@click.argument("videos", nargs=-1, required=True)
@click.option("--out", "-o", required=True, help="The corpus store (a folder; created or resumed).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML whose [plugins.tracker|pose|crop|flow] tables configure the chain, as for `run`.")
@click.option("--workers", type=int, default=1, show_default=True, help="Local worker processes (one video each).")
@click.option("--ray", "ray_address", help="Run one Ray task per video: a cluster ADDRESS, 'auto' (the running "
              "cluster) or 'local' (start one here). Needs the [distributed] extra.")
@click.option("--fps", default="25", show_default=True, help="Target frame rate, or 'none' for the source rate.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--engine", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="onnxruntime",
              show_default=True, help="Inference backend of the plugins that run networks.")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch/OpenCV threads per worker.")
@click.option("--max-frames", type=int, help="Stop each video after this many frames (smoke runs).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("-v", "--verbose", count=True)
def prepare(videos, out, config_path, workers, ray_address, fps, device, engine, threads, max_frames, quiet, verbose):
    """Run tracker → pose → crop → flow over VIDEOS into a per-video store.

    Videos already complete in the store are skipped, so a killed run resumes. A broken
    video is reported and skipped; the exit status is 1 when any video failed.
    """
    from vpd_stream.errors import ConfigError

    from ..corpus.parallel import prepare_corpus
    from ..corpus.prepare import PrepareSettings

    setup_logging(verbose)
    try:
        target = None if fps.lower() == "none" else float(fps)
    except ValueError:
        raise ConfigError(f"--fps must be a number or 'none', got {fps!r}") from None
    if target is not None and target <= 0:
        raise ConfigError("--fps must be positive or 'none'")
    settings = PrepareSettings(fps=target, device=device, engine=engine, config_path=config_path,
                               max_frames=max_frames, threads=threads)
    summary = prepare_corpus(list(videos), out, settings, workers=workers, ray_address=ray_address,
                             progress=not quiet)
    for line in summary.lines():
        click.echo(line, err=True)
    if summary.failed:
        sys.exit(1)


DISTILL_HELP = {
    "out": "The student checkpoint to write (MODEL.safetensors).",
    "vipe_model": "The VIPE* model for --teacher vipe (default: the committed one).",
    "threshold": "Weak-pose selection: least mean joint score of a supervising frame (0.7 for tennis).",
    "val_fraction": "Fraction of the supervising frames held out for validation.",
    "epoch_size": "Frames sampled per epoch.",
    "weight_decay": "AdamW weight decay.",
    "motion": "--no-motion: the ablation without decoder D, the student regresses p_t directly.",
    "swap_aware_motion": "Δp against the left/right-relabelled p_{t−1} where the teacher swapped sides between frames.",
    "architecture": "The student's backbone (the paper's is resnet34; resnet18 for quick runs).",
    "loader_workers": "Data-loader worker processes.",
    "val_frames": "Held-out frames evaluated per epoch.",
    "ma_window": "Epochs in the validation loss's moving average (picks the best epoch).",
    "resume": "Continue from MODEL.train/state.pt.",
    "amp": "Mixed precision (default: on for CUDA).",
    "channels_last": "Channels-last memory format (default: on for CUDA).",
    "augment": "--no-augment: train without augmentation.",
    "threads": "Torch threads on CPU (0 = default).",
}
DISTILL_CHOICES = {"teacher": ("pose2d", "vipe"), "device": ("auto", "cpu", "cuda"),
                   "architecture": ("resnet34", "resnet18")}


def _distill_params() -> list[click.Parameter]:
    from ..distill.train import DistillOptions  # torch: only when distill itself is used

    return dataclass_params(DistillOptions, arguments=("store",), skip=("progress",), help=DISTILL_HELP,
                            choices=DISTILL_CHOICES, short={"out": "-o"})


@click.command(cls=DeferredParamsCommand, deferred=_distill_params)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no closing line.")
@click.option("-v", "--verbose", count=True)
def distill(quiet: bool, verbose: int, **values):
    """Distill the pose teacher into the student F (ResNet-34 on RGB + flow) from STORE."""
    from ..distill.train import DistillOptions, distill as run, run_dir

    setup_logging(verbose)
    opts = DistillOptions(**values, progress=not quiet)
    results = run(opts)
    best, trivial = results["best"], results["trivial"]
    if not quiet:
        click.echo(f"best epoch {results['best_epoch']}: validation loss {best['val_loss']:.4f} "
                   f"(pose {best['val_pose']:.4f}, motion {best['val_motion']:.4f}); trivial predictor "
                   f"{trivial['loss']:.4f}; student written to {opts.out}; log in {run_dir(opts.out)}", err=True)


@click.command()
@click.argument("store")
@click.option("--model", "-m", required=True, help="A student from `vpd-stream distill` (.safetensors) or an exported .onnx.")
@click.option("--concat", help="A second student whose embedding is appended (Concat-VPD: 2D-VPD then VI-VPD).")
@click.option("--out", "-o", required=True, help="Folder for the per-video feature files.")
@click.option("--engine", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="onnxruntime", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16", "int8"]))
@click.option("--max-batch", type=int, default=32, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = one per core).")
@click.option("-q", "--quiet", is_flag=True)
def embed(store, model, concat, out, engine, precision, max_batch, device, threads, quiet):
    """Embed every frame of STORE (and its mirror) with a student, through the stream's engines."""
    from ..embed import EmbedOptions, embed_store

    result = embed_store(EmbedOptions(store=store, model=model, out=out, concat=concat, engine=engine,
                                      precision=precision, max_batch=max_batch, device=device, threads=threads,
                                      progress=not quiet))
    if not quiet:
        click.echo(f"embedded {result['rows']} frames of {result['videos']} video(s), d={result['dim']}, into {out}",
                   err=True)
