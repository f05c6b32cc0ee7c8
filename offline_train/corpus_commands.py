"""``vpd-stream prepare``, ``distill`` and ``embed``: the offline path that makes the student."""
from __future__ import annotations

import logging
import sys

import click


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


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

    from .corpus.parallel import prepare_corpus
    from .corpus.prepare import PrepareSettings

    _logging(verbose)
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


@click.command()
@click.argument("store")
@click.option("--out", "-o", required=True, help="The student checkpoint to write (MODEL.safetensors).")
@click.option("--teacher", type=click.Choice(["pose2d", "vipe"]), default="pose2d", show_default=True)
@click.option("--vipe-model", help="The VIPE* model for --teacher vipe (default: the committed one).")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Weak-pose selection: least mean joint score of a supervising frame (0.7 for tennis).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--epoch-size", type=int, default=20_000, show_default=True, help="Frames sampled per epoch.")
@click.option("--batch-size", type=int, default=100, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--no-motion", is_flag=True, help="Ablation: no decoder D, the student regresses p_t directly.")
@click.option("--swap-aware-motion/--no-swap-aware-motion", default=True, show_default=True,
              help="Δp against the left/right-relabelled p_{t−1} where the teacher swapped sides between frames.")
@click.option("--resume", is_flag=True, help="Continue from MODEL.train/state.pt.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--amp/--no-amp", default=None, help="Mixed precision (default: on for CUDA).")
@click.option("--channels-last/--no-channels-last", default=None, help="Default: on for CUDA.")
@click.option("--loader-workers", type=int, default=2, show_default=True)
@click.option("--val-frames", type=int, default=2000, show_default=True, help="Held-out frames evaluated per epoch.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="Torch threads on CPU (0 = default).")
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@click.option("--architecture", type=click.Choice(["resnet34", "resnet18"]), default="resnet34", show_default=True,
              help="The student's backbone (the paper's is resnet34; resnet18 for quick runs).")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def distill(store, out, teacher, vipe_model, threshold, val_fraction, epochs, epoch_size, batch_size, lr,
            no_motion, swap_aware_motion, resume, device, amp, channels_last, loader_workers, val_frames, seed, threads,
            no_augment, architecture, quiet, verbose):
    """Distill the pose teacher into the student F (ResNet-34 on RGB + flow) from STORE."""
    from .distill.train import DistillOptions, distill as run, run_dir

    _logging(verbose)
    opts = DistillOptions(store=store, out=out, teacher=teacher, vipe_model=vipe_model, threshold=threshold,
                          val_fraction=val_fraction, epochs=epochs, epoch_size=epoch_size, batch_size=batch_size,
                          lr=lr, motion=not no_motion, seed=seed, loader_workers=loader_workers,
                          val_frames=val_frames, resume=resume, device=device, amp=amp,
                          channels_last=channels_last, augment=not no_augment, threads=threads,
                          architecture=architecture, swap_aware_motion=swap_aware_motion,
                          progress=not quiet)
    results = run(opts)
    best, trivial = results["best"], results["trivial"]
    if not quiet:
        click.echo(f"best epoch {results['best_epoch']}: validation loss {best['val_loss']:.4f} "
                   f"(pose {best['val_pose']:.4f}, motion {best['val_motion']:.4f}); trivial predictor "
                   f"{trivial['loss']:.4f}; student written to {out}; log in {run_dir(out)}", err=True)


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
    from .embed import EmbedOptions, embed_store

    result = embed_store(EmbedOptions(store=store, model=model, out=out, concat=concat, engine=engine,
                                      precision=precision, max_batch=max_batch, device=device, threads=threads,
                                      progress=not quiet))
    if not quiet:
        click.echo(f"embedded {result['rows']} frames of {result['videos']} video(s), d={result['dim']}, into {out}",
                   err=True)
