"""Video Pose Distillation: train the student F (+ decoder D) on a prepared corpus.

As the VPD paper and supplement: F is the ResNet-34 student (5 channels, 128×128), D an
MLP (128-128) predicting [p_t, p_t − p_{t−1}] from F's embedding, with a squared L2 loss;
``motion=False`` is the ablation where F regresses p_t directly. AdamW (lr 5e-4), batch
100, epochs of 20,000 randomly sampled frames, 20 % of supervising frames held out; the
best epoch is the one with the lowest moving average of the validation loss.

Outputs, for ``--out MODEL.safetensors``:

* ``MODEL.safetensors`` + ``MODEL.json`` — the best student, in the engines' checkpoint
  format (vpd_stream.models.checkpoint), ready for ``[plugins.student] model``;
* ``MODEL.train/state.pt`` — the latest epoch's full training state (``--resume``);
* ``MODEL.train/decoder.safetensors`` — D of the best epoch;
* ``MODEL.train/log.csv`` and ``loss.png`` — per-epoch losses, timings and the curves;
* ``MODEL.train/events.out.tfevents.*`` — the same per-epoch scalars for TensorBoard
  (``tensorboard --logdir MODEL.train``): ``loss/train``, ``loss/val``, ``loss/val_ma``,
  ``error/val_pose``, ``error/val_motion``, the trivial predictor's ``trivial/*``, ``lr``,
  ``speed/frames_per_s``, ``time/data_wait_s`` and ``time/compute_s``;
* ``MODEL.train/results.json`` — the best epoch's validation errors and the trivial ones.

Multi-GPU: launch with ``torchrun --nproc_per_node=N -m offline_train.distill STORE --out MODEL``;
each rank takes every N-th sampled frame and the validation sums are all-reduced. On
CUDA, mixed precision (bf16 where supported, else fp16 with loss scaling) and
channels-last are on by default.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vpd_stream.errors import ConfigError, InputError
from vpd_stream.models.checkpoint import save_student
from vpd_stream.models.resnet import StudentConfig, build_student

from .augment import AugmentConfig, augment_batch
from .dataset import DistillData, FrameDataset, RandomFrameSampler, whole_batch
from .decoder import DistillNet, MotionDecoder

log = logging.getLogger(__name__)
TEACHERS = ("pose2d", "vipe")


@dataclass
class DistillOptions:
    store: str
    out: str
    teacher: str = "pose2d"
    vipe_model: str | None = None  # the VIPE* checkpoint, for teacher = vipe (default: the committed one)
    threshold: float = 0.5  # weak-pose selection: mean joint score
    val_fraction: float = 0.2
    epochs: int = 20
    epoch_size: int = 20_000
    batch_size: int = 100
    lr: float = 5e-4
    weight_decay: float = 0.01
    motion: bool = True  # False: the --no-motion ablation (no D, F regresses p_t)
    swap_aware_motion: bool = True  # Δp against the relabelled p_{t−1} where the teacher swapped sides
    architecture: str = "resnet34"
    seed: int = 0
    loader_workers: int = 2
    val_frames: int = 2_000  # at most this many held-out frames are evaluated each epoch
    ma_window: int = 3  # epochs in the validation loss's moving average
    resume: bool = False
    device: str = "auto"  # auto | cpu | cuda
    amp: bool | None = None  # default: on for CUDA
    channels_last: bool | None = None  # default: on for CUDA
    augment: bool = True
    threads: int = 0  # torch intra-op threads on CPU (0 = torch's default)
    progress: bool = True


def run_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".train")


# -- the teacher -------------------------------------------------------------------------


def resolve_teacher(opts: DistillOptions):
    """The function that turns a video's stored arrays into teacher targets (n, d)."""
    if opts.teacher == "pose2d":
        from .dataset import pose2d_teacher

        return pose2d_teacher
    if opts.teacher == "vipe":
        try:
            from vpd_stream.models.vipe import embed_poses, load_vipe
        except ImportError:
            raise ConfigError("--teacher vipe is not available: vpd_stream.models.vipe (load_vipe, "
                              "embed_poses) is not installed; use --teacher pose2d") from None
        model = load_vipe(opts.vipe_model)  # None: the committed default VIPE* model

        def vipe_teacher(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            kp = arrays["keypoints"]  # (n, 13, 3): pixels + scores; VIPE* normalizes them itself
            return embed_poses(model, kp), embed_poses(model, kp, flip=True)

        return vipe_teacher
    raise ConfigError(f"unknown teacher '{opts.teacher}'; choose one of {', '.join(TEACHERS)}")


# -- set-up ------------------------------------------------------------------------------


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def make_runtime(opts: DistillOptions) -> Runtime:
    want = opts.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA device is available; use --device cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world > 1:
        dist.init_process_group("nccl" if want == "cuda" else "gloo")
        rank = dist.get_rank()
    if want == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        if opts.threads:
            torch.set_num_threads(opts.threads)
    amp = opts.amp if opts.amp is not None else device.type == "cuda"
    amp_dtype = None
    if amp:
        if device.type != "cuda":
            raise ConfigError("--amp needs a CUDA device")
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    cl = opts.channels_last if opts.channels_last is not None else device.type == "cuda"
    return Runtime(device, rank, world, amp_dtype, cl)


def data_hash(data: DistillData) -> str:
    """Identity of the training data: videos, their row counts, the split and the threshold."""
    digest = hashlib.sha256()
    for name, rows in zip(data.names, data._rows):
        digest.update(f"{name}:{rows};".encode())
    digest.update(data.train_idx.tobytes())
    digest.update(f"{data.threshold}:{data.teacher}".encode())
    return digest.hexdigest()


def _loss_terms(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, dim: int,
                motion: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row squared L2 errors of the pose half and (masked) motion half."""
    pose = ((pred[:, :dim].float() - target[:, :dim]) ** 2).sum(1)
    if not motion:
        return pose, torch.zeros_like(pose)
    mot = ((pred[:, dim:].float() - target[:, dim:]) ** 2).sum(1) * valid.float()
    return pose, mot


# -- the loop ----------------------------------------------------------------------------


def distill(opts: DistillOptions) -> dict[str, Any]:
    """Train; returns the results of the best epoch (also in MODEL.train/results.json)."""
    if not str(opts.out).endswith(".safetensors"):
        raise ConfigError(f"--out must name a .safetensors file, got {opts.out}")
    for name in ("epochs", "epoch_size", "batch_size", "ma_window"):
        if getattr(opts, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    rt = make_runtime(opts)
    teacher_fn = resolve_teacher(opts)
    data = DistillData(opts.store, threshold=opts.threshold, val_fraction=opts.val_fraction,
                       seed=opts.seed, teacher=opts.teacher, teacher_fn=teacher_fn,
                       swap_aware_motion=opts.swap_aware_motion)
    if len(data.val_idx) == 0:
        raise ConfigError("no held-out frames: --val-fraction must be above 0 to choose the best epoch")
    dim = data.dim
    out_dir = run_dir(opts.out)
    state_path = out_dir / "state.pt"
    rgb_mean, rgb_std = data.rgb_stats(seed=opts.seed)
    config = StudentConfig(architecture=opts.architecture, dim=dim, rgb_mean=rgb_mean, rgb_std=rgb_std)
    student = build_student(config, seed=opts.seed)
    decoder = None
    if opts.motion:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed + 1)
            decoder = MotionDecoder(dim, dim)
    net = DistillNet(student, decoder, rt.channels_last).to(rt.device)
    if rt.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp_dtype == torch.float16)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"ma": math.inf, "epoch": -1}
    start_epoch = 0
    fingerprint = {"store_hash": data_hash(data), "teacher": opts.teacher, "motion": opts.motion,
                   "architecture": opts.architecture, "dim": dim, "seed": opts.seed,
                   "swap_aware_motion": opts.swap_aware_motion}
    if opts.resume:
        if not state_path.is_file():
            raise InputError(f"--resume: no training state at {state_path}; start without --resume")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["fingerprint"] != fingerprint:
            raise ConfigError(f"--resume: {state_path} was trained with other data or settings "
                              f"({state['fingerprint']}); start a new run with another --out")
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        config = StudentConfig(**state["student_config"])
    out_dir.mkdir(parents=True, exist_ok=True)
    ddp = net
    if rt.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)

    train_set = data.subset(data.train_idx)
    sampler = RandomFrameSampler(len(train_set), opts.epoch_size, opts.seed, rt.rank, rt.world)
    per_rank_batch = max(1, opts.batch_size // rt.world)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=per_rank_batch, sampler=sampler, num_workers=opts.loader_workers,
        collate_fn=whole_batch, pin_memory=rt.device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if opts.loader_workers else None)
    val_rng = np.random.default_rng([opts.seed, 1])
    val_idx = data.val_idx
    if len(val_idx) > opts.val_frames:
        val_idx = np.sort(val_rng.choice(val_idx, opts.val_frames, replace=False))
    val_set = data.subset(val_idx)
    trivial = trivial_errors(data, val_idx, opts.motion)
    aug_cfg = AugmentConfig()
    # purge_step: a resumed run drops the events of epochs it is about to redo.
    tb = _tensorboard(out_dir, start_epoch + 1) if rt.main else None

    for epoch in range(start_epoch, opts.epochs):
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(opts.seed * 100_003 + epoch)
        net.train()
        t_epoch = time.perf_counter()
        wait_s = compute_s = 0.0
        sums = np.zeros(3)
        seen = 0
        bar = _bar(len(loader), f"epoch {epoch + 1}/{opts.epochs}", opts.progress and rt.main)
        t_wait = time.perf_counter()
        for batch in loader:
            t0 = time.perf_counter()
            wait_s += t0 - t_wait
            rgb = batch["rgb"].to(rt.device, non_blocking=True)
            flow = batch["flow"].to(rt.device, non_blocking=True)
            target = batch["target"].to(rt.device, non_blocking=True)
            target_flipped = batch["target_flipped"].to(rt.device, non_blocking=True)
            valid = batch["motion_valid"].to(rt.device, non_blocking=True)
            mask = batch["mask"].to(rt.device) if batch["mask"] is not None else None
            if opts.augment:
                rgb, flow, target = augment_batch(rgb, flow, target, mask, gen, aug_cfg, target_flipped)
            with torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None):
                pred = ddp(rgb, flow)
            pose_err, mot_err = _loss_terms(pred, target, valid, dim, opts.motion)
            loss = (pose_err + mot_err).mean()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if rt.device.type == "cuda":
                torch.cuda.synchronize(rt.device)
            n = len(pred)
            sums += [float(loss.detach()) * n, float(pose_err.detach().sum()), float(mot_err.detach().sum())]
            seen += n
            compute_s += time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums[0] / seen:.4f}")
            t_wait = time.perf_counter()
        if bar is not None:
            bar.close()
        train_sums = _all_reduce(rt, np.array([sums[0], seen]))
        val = evaluate(net, val_set, dim, opts.motion, rt)
        history.append({"epoch": epoch + 1, "train_loss": train_sums[0] / max(1, train_sums[1]),
                        "val_loss": val["loss"], "val_pose": val["pose"], "val_motion": val["motion"],
                        "frames": int(train_sums[1]), "seconds": time.perf_counter() - t_epoch,
                        "data_wait_s": wait_s, "compute_s": compute_s,
                        "frames_per_s": train_sums[1] / max(1e-9, time.perf_counter() - t_epoch)})
        history[-1] = {k: (float(v) if isinstance(v, (float, np.floating)) else int(v))
                       for k, v in history[-1].items()}  # plain numbers: state.pt loads with weights_only
        window = [h["val_loss"] for h in history[-opts.ma_window:]]
        ma = float(np.mean(window))
        history[-1]["val_loss_ma"] = ma
        if rt.main:
            if ma < best["ma"]:
                best = {"ma": ma, "epoch": epoch + 1, **{k: history[-1][k] for k in ("val_loss", "val_pose", "val_motion")}}
                save_student(net.student, opts.out, teacher=opts.teacher, training_data_hash=fingerprint["store_hash"],
                             extra={"epoch": epoch + 1, "val_loss": val["loss"], "motion": opts.motion,
                                    "swap_aware_motion": opts.swap_aware_motion,
                                    "threshold": opts.threshold, "store": str(opts.store)})
                if decoder is not None:
                    from safetensors.torch import save_file

                    save_file({k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()},
                              str(out_dir / "decoder.safetensors"))
            _write_state(state_path, net, optimizer, scaler, epoch, history, best, fingerprint, config)
            _write_log(out_dir, history, trivial)
            _write_scalars(tb, history[-1], trivial, optimizer.param_groups[0]["lr"], opts.motion)
            log.info("epoch %d: train %.4f val %.4f (ma %.4f)", epoch + 1, history[-1]["train_loss"], val["loss"], ma)
    train_set.close()
    val_set.close()
    if tb is not None:
        tb.close()
    results = {"best_epoch": best["epoch"], "best": best, "trivial": trivial,
               "train_frames": int(len(data.train_idx)), "val_frames_total": int(len(data.val_idx)),
               "val_frames_evaluated": int(len(val_idx)), "rows": int(data.total_rows), "motion": opts.motion,
               "swap_aware_motion": opts.swap_aware_motion, "teacher_swaps": int(data.targets.swapped.sum()),
               "threshold": opts.threshold, "epochs": opts.epochs, "epoch_size": opts.epoch_size,
               "history": history}
    if rt.main:
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if rt.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return results


def _all_reduce(rt: Runtime, values: np.ndarray) -> np.ndarray:
    if rt.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=rt.device if rt.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.cpu().numpy()


@torch.no_grad()
def evaluate(net: DistillNet, val_set: FrameDataset, dim: int, motion: bool, rt: Runtime,
             batch: int = 100) -> dict[str, float]:
    """Mean squared-L2 errors on held-out rows, without augmentation (sharded under DDP)."""
    net.eval()
    sums = np.zeros(4)  # loss, pose, motion, motion rows
    positions = np.arange(len(val_set))[rt.rank::rt.world]
    for start in range(0, len(positions), batch):
        b = val_set.__getitems__(positions[start:start + batch].tolist())
        valid = b["motion_valid"].to(rt.device)
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None):
            pred = net(b["rgb"].to(rt.device), b["flow"].to(rt.device))
        target = b["target"].to(rt.device)
        pose_err, mot_err = _loss_terms(pred, target, valid, dim, motion)
        sums += [float((pose_err + mot_err).sum()), float(pose_err.sum()), float(mot_err.sum()), float(valid.sum())]
    total = _all_reduce(rt, np.concatenate([sums, [len(positions)]]))
    n = max(1.0, total[4])
    return {"loss": float(total[0] / n), "pose": float(total[1] / n),
            "motion": float(total[2] / max(1.0, total[3])) if motion else float("nan")}


def trivial_errors(data: DistillData, val_idx: np.ndarray, motion: bool) -> dict[str, float]:
    """Errors of the trivial predictor (the training mean) on the same held-out rows."""
    t = data.targets
    mean = data.target_mean()
    d = data.dim
    pose = ((t.pose[val_idx] - mean[:d]) ** 2).sum(1)
    valid = t.motion_valid[val_idx]
    mot = ((t.motion[val_idx] - mean[d:]) ** 2).sum(1) * valid
    loss = pose + (mot if motion else 0.0)
    return {"loss": float(loss.mean()), "pose": float(pose.mean()),
            "motion": float(mot.sum() / max(1, valid.sum()))}


def _write_state(path: Path, net: DistillNet, optimizer, scaler, epoch: int, history: list, best: dict,
                 fingerprint: dict, config: StudentConfig) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch, "history": history, "best": best, "fingerprint": fingerprint,
                "student_config": dataclasses.asdict(config)}, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous epoch's state intact


def _write_log(out_dir: Path, history: list[dict[str, Any]], trivial: dict[str, float]) -> None:
    fields = ["epoch", "train_loss", "val_loss", "val_loss_ma", "val_pose", "val_motion", "frames",
              "seconds", "data_wait_s", "compute_s", "frames_per_s"]
    with open(out_dir / "log.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train (augmented)")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax.plot(epochs, [h["val_loss_ma"] for h in history], "--", label="validation (moving average)")
    ax.axhline(trivial["loss"], color="gray", linestyle=":", label="trivial (training mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("squared L2 loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png", dpi=100)
    plt.close(fig)


def _tensorboard(out_dir: Path, purge_step: int):
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (a dependency)

    return SummaryWriter(log_dir=str(out_dir), purge_step=purge_step, flush_secs=30)


def _write_scalars(tb, row: dict[str, Any], trivial: dict[str, float], lr: float, motion: bool) -> None:
    """One epoch's scalars (step = the epoch, counted from 1, as in log.csv)."""
    if tb is None:
        return
    step = int(row["epoch"])
    values = {"loss/train": row["train_loss"], "loss/val": row["val_loss"], "loss/val_ma": row["val_loss_ma"],
              "error/val_pose": row["val_pose"], "trivial/loss": trivial["loss"], "trivial/pose": trivial["pose"],
              "lr": lr, "speed/frames_per_s": row["frames_per_s"], "time/data_wait_s": row["data_wait_s"],
              "time/compute_s": row["compute_s"], "time/epoch_s": row["seconds"]}
    if motion:
        values["error/val_motion"] = row["val_motion"]
        values["trivial/motion"] = trivial["motion"]
    for tag, value in values.items():
        tb.add_scalar(tag, float(value), step)
    tb.flush()


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False)


# -- the no-motion student's error on Δp ---------------------------------------------------


@torch.no_grad()
def motion_error_from_pairs(model_path: str, data: DistillData, val_idx: np.ndarray,
                            batch: int = 50) -> float:
    """Δp error of a student with no D: F(x_t) − F(x_{t−1}) against p_t − p_{t−1}.

    A student that regresses p_t can only estimate motion from two frames' predictions;
    the motion student predicts it from one. Uses held-out rows whose previous frame has a
    confident pose.
    """
    from vpd_stream.models.checkpoint import load_student

    student, _ = load_student(model_path)
    rows = val_idx[data.targets.motion_valid[val_idx]]
    if not len(rows):
        raise InputError("no held-out frame has a confident previous frame; cannot measure Δp error")
    ds = data.subset(rows)
    total = 0.0
    for start in range(0, len(rows), batch):
        positions = np.arange(start, min(len(rows), start + batch))
        cur = ds.read_rows(rows[positions])
        prev = ds.read_rows(rows[positions], prev=True)
        delta = student(cur["rgb"], cur["flow"]) - student(prev["rgb"], prev["flow"])
        total += float(((delta - cur["target"][:, data.dim:]) ** 2).sum())
    ds.close()
    return total / len(rows)
