"""`vpd-stream export` and `vpd-stream build-engine` (registered by vpd_stream.cli)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from vpd_stream.command_options import out_option
from vpd_stream.data_dir import data_folder
from vpd_stream.errors import ConfigError, ModelError


def _calibration_dir(option: str | None) -> Path:
    if option:
        return Path(option)
    return data_folder(None, "videos", "int8 export needs real crops (videos of athletes): calibration videos",
                       option="--calibration-videos")


@click.command("export")
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@out_option(required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="fp16: half weights (TensorRT 11); int8: static QDQ calibrated on real crops.")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--random-init", is_flag=True, help="Export a seeded untrained student (pipeline testing only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random-init.")
@click.option("--dim", type=int, default=26, show_default=True, help="d of --random-init.")
@click.option("--calibration-videos", type=click.Path(file_okay=False), help="int8: folder of calibration videos.")
@click.option("--calibration-crops", type=int, default=64, show_default=True)
@click.option("--force", is_flag=True, help="int8: write the model even if it fails the accuracy check.")
def export(checkpoint: str | None, out: str, precision: str, opset: int, random_init: bool, seed: int,
           dim: int, calibration_videos: str | None, calibration_crops: int, force: bool) -> None:
    """Write the student CHECKPOINT (.safetensors + sidecar) as an ONNX model with a dynamic batch."""
    from engines.export import export_student
    from vpd_stream.models.student_loading import resolve_student

    if checkpoint is None and not random_init:
        raise ConfigError("give a CHECKPOINT (.safetensors from `vpd-stream distill`) or --random-init")
    student = resolve_student(checkpoint, random_init=random_init and checkpoint is None, seed=seed,
                              random_dim=dim)
    if student.module is None:
        raise ModelError(f"{checkpoint} is already an ONNX file; export takes the .safetensors checkpoint")
    out = Path(out)
    if precision != "int8":
        export_student(student.module, out, precision=precision, opset=opset, sidecar=student.sidecar)
        click.echo(f"wrote {out} ({precision}, opset {opset}, dynamic batch)")
        return
    _export_int8(student, out, opset, _calibration_dir(calibration_videos), calibration_crops, force)


def _export_int8(student, out: Path, opset: int, videos: Path, count: int, force: bool) -> None:
    from engines.export import export_student
    from engines.onnxruntime_engine import OnnxRuntimeEngine
    from engines.quantize import check_int8, load_real_crops, quantize_int8, split_by_video
    from engines.torch_engine import TorchEngine
    from engines import run_chunked

    calibration = load_real_crops(videos, count, every=3, offset=0)
    # Held out (frames calibration never saw); probes and gallery from different videos.
    probe, gallery = split_by_video(load_real_crops(videos, 96, every=3, offset=1))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_student(student.module, Path(tmp) / "fp32.onnx", opset=opset,
                              sidecar={**student.sidecar, "calibration": calibration.digest()})
        quantize_int8(fp32, out, calibration)
    reference = TorchEngine(student.module, max_batch=64)
    quantized = OnnxRuntimeEngine(out, max_batch=64, precision="int8")
    result = check_int8(run_chunked(reference, probe.inputs())["embedding"],
                        run_chunked(reference, gallery.inputs())["embedding"],
                        run_chunked(quantized, probe.inputs())["embedding"],
                        run_chunked(quantized, gallery.inputs())["embedding"])
    click.echo(result.summary())
    if not result.ok and not force:
        out.unlink(missing_ok=True)
        raise ModelError(f"int8 does not hold this model's accuracy ({result.summary()}); use --precision fp32, "
                         "or --force to keep it anyway")
    click.echo(f"wrote {out} (int8 QDQ, calibrated on {len(calibration)} crops from {videos})")


@click.command("build-engine")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp16", show_default=True)
@click.option("--max-batch", type=int, default=64, show_default=True, help="Largest batch of the profile.")
@click.option("--opt-batch", type=int, default=None, help="Batch the profile is tuned for (default: max).")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Default $VPD_CACHE_DIR or ~/.cache/vpd-stream.")
@click.option("--rebuild", is_flag=True, help="Build even if the cache has the engine.")
def build_engine(model: str, precision: str, max_batch: int, opt_batch: int | None, cache_dir: str | None,
                 rebuild: bool) -> None:
    """Build (and cache) the TensorRT engine for MODEL.onnx ahead of time."""
    from engines.tensorrt_engine import build_engine as build

    if max_batch < 1 or (opt_batch is not None and not 1 <= opt_batch <= max_batch):
        raise ConfigError("--max-batch must be ≥ 1 and --opt-batch between 1 and --max-batch")
    path, key = build(model, precision=precision, max_batch=max_batch, opt_batch=opt_batch,
                      cache_root=cache_dir, rebuild=rebuild)
    click.echo(f"{path}\n  TensorRT {key.trt_version}, {key.gpu_name} (sm {key.compute_capability}), "
               f"{key.precision}, batch profile {key.profile}")
