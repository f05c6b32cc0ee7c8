"""Train VIPE*: 3D reconstruction of canonical pose features + a cross-view contrastive loss.

Each step draws 3D poses (MSR Action3D frames, procedural poses, or half of each),
mirrors half of them (a mirrored pose with swapped labels is again a real pose, so the
model sees left- and right-handed movements alike), renders every pose from two random
cameras, and embeds both views. Losses:

* reconstruction: a decoder (discarded afterwards) predicts the canonicalized 3D
  features (canonical.py) from each view's embedding — squared error;
* contrastive (InfoNCE, both directions): the other view of the same 3D pose is the
  positive; poses that differ by ≥ ``neg_angle_deg`` in some bone direction are the
  negatives; pairs closer than that are left out (they are the same pose, near enough).

Validation (fixed seed, held-out MSR subjects and held-out procedural poses): cross-view
retrieval — view A of each pose searches the B views of all poses; a hit is a retrieved
pose within ``hit_angle_deg`` of the query's 3D pose — for VIPE* and for the normalized
2D joints the embedding replaces.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from vpd_stream.errors import ConfigError
from vpd_stream.models.vipe import Vipe, VipeConfig, VipeDecoder, save_vipe

from .augment import AugmentedPoses, PoseAugmentConfig
from .cameras import CameraConfig, render_views
from .canonical import FEATURE_DIM, bone_directions, canonical_features, canonicalize, max_bone_angle_deg, mirror_poses
from .msr_action3d import MsrPoses, load_msr_action3d
from .synthetic import SyntheticConfig, SyntheticPoses

DATA_CHOICES = ("msr", "synthetic", "both")
TRAIN_SUBJECTS = (1, 2, 3, 4, 5, 6, 7, 8)
VAL_SUBJECTS = (9, 10)


class PoseSource(Protocol):
    name: str

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray: ...


@dataclass
class TrainConfig:
    data: str = "both"
    steps: int = 1500
    batch_poses: int = 256  # each seen from two cameras: 512 inputs a step
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    recon_weight: float = 1.0
    contrastive_weight: float = 1.0
    neg_angle_deg: float = 45.0
    mirror_prob: float = 0.5
    seed: int = 0
    threads: int = 1  # 2 threads on a contended 2-core box ran 47x slower (OpenMP spinning)
    val_every: int = 500
    val_poses: int = 1000  # per validation source
    hit_angle_deg: float = 30.0
    model: VipeConfig = field(default_factory=VipeConfig)
    cameras: CameraConfig = field(default_factory=CameraConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    augment: PoseAugmentConfig = field(default_factory=PoseAugmentConfig)  # on MSR poses (augment.py)


@dataclass
class ValSet:
    name: str
    view_a: np.ndarray  # (n, 39)
    view_b: np.ndarray  # (n, 39)
    bones: np.ndarray  # (n, 14, 3) canonical bone directions
    target: np.ndarray  # (n, 90)


class Mixture:
    """Draw each pose from one of several sources with equal probability."""

    def __init__(self, sources: list[PoseSource]) -> None:
        self.sources = sources
        self.name = "+".join(s.name for s in sources)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        which = rng.integers(0, len(self.sources), n)
        out = np.empty((n, 13, 3))
        for i, src in enumerate(self.sources):
            k = int((which == i).sum())
            if k:
                out[which == i] = src.sample(rng, k)
        return out


def build_source(data: str, msr_root: Path | None, cfg: TrainConfig) -> tuple[PoseSource, dict]:
    """The training pose source for ``--data`` and a description of it for the sidecar."""
    if data not in DATA_CHOICES:
        raise ConfigError(f"--data must be one of {', '.join(DATA_CHOICES)}, got {data!r}")
    sources: list[PoseSource] = []
    info: dict = {"data": data}
    if data in ("msr", "both"):
        if msr_root is None:
            raise ConfigError("MSR Action3D not found: pass --msr DIR or set VPD_DATA_DIR")
        msr = MsrPoses(load_msr_action3d(msr_root, TRAIN_SUBJECTS))
        sources.append(AugmentedPoses(msr, cfg.augment) if cfg.augment.active else msr)
        if cfg.augment.active:
            info["msr_augment"] = dataclasses.asdict(cfg.augment)
        info["msr_train_subjects"] = list(TRAIN_SUBJECTS)
        info["msr_train_frames"] = len(msr)
        info["msr_hash"] = hashlib.sha256(msr.poses.astype(np.float32).tobytes()).hexdigest()[:16]
    if data in ("synthetic", "both"):
        sources.append(SyntheticPoses(cfg.synthetic))
        info["synthetic"] = dataclasses.asdict(cfg.synthetic)
    return (sources[0] if len(sources) == 1 else Mixture(sources)), info


def make_val_set(name: str, poses: np.ndarray, cams: CameraConfig, seed: int, inputs: str = "torso") -> ValSet:
    rng = np.random.default_rng(seed)
    return ValSet(name=name, view_a=render_views(poses, rng, cams, inputs), view_b=render_views(poses, rng, cams, inputs),
                  bones=bone_directions(canonicalize(poses)), target=canonical_features(poses))


def validation_sets(msr_root: Path | None, cfg: TrainConfig) -> list[ValSet]:
    """The same held-out sets whatever ``--data`` is, so the ablation compares like with like."""
    rng = np.random.default_rng(10_000 + cfg.seed)
    sets = [make_val_set("synthetic", SyntheticPoses(cfg.synthetic).sample(rng, cfg.val_poses), cfg.cameras, 1,
                         cfg.model.inputs)]
    if msr_root is not None:
        held = MsrPoses(load_msr_action3d(msr_root, VAL_SUBJECTS))
        sets.append(make_val_set("msr_heldout", held.sample(rng, cfg.val_poses), cfg.cameras, 2, cfg.model.inputs))
    return sets


def cross_view_hits(emb_a: np.ndarray, emb_b: np.ndarray, bones: np.ndarray, hit_angle: float) -> float:
    """Fraction of view-A queries whose nearest view-B item is within ``hit_angle`` in 3D."""
    a = emb_a / np.maximum(np.linalg.norm(emb_a, axis=1, keepdims=True), 1e-8)
    b = emb_b / np.maximum(np.linalg.norm(emb_b, axis=1, keepdims=True), 1e-8)
    nearest = np.argmin(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), axis=1)
    angles = np.array([max_bone_angle_deg(bones[i:i + 1], bones[j:j + 1])[0, 0] for i, j in enumerate(nearest)])
    return float((angles < hit_angle).mean())


def contrastive_loss(e1: torch.Tensor, e2: torch.Tensor, negatives: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE over view pairs: diagonal positives, ``negatives`` (n, n) bool, others ignored."""
    n = len(e1)
    eye = torch.eye(n, dtype=torch.bool)
    logits = (e1 @ e2.T / tau).masked_fill(~(negatives | eye), float("-inf"))
    target = torch.arange(n)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def train_vipe(cfg: TrainConfig, msr_root: Path | None,
               log: Callable[[str], None] = print) -> tuple[Vipe, dict]:
    """Train and return the model and a summary (losses, validation, timing)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    source, data_info = build_source(cfg.data, msr_root, cfg)
    val_sets = validation_sets(msr_root, cfg)
    model = Vipe(dataclasses.replace(cfg.model, vflip=False))  # vflip only changes inference
    decoder = VipeDecoder(cfg.model.dim, FEATURE_DIM)
    params = list(model.parameters()) + list(decoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    history: list[dict] = []
    start = time.perf_counter()
    run = {"recon": 0.0, "contrast": 0.0, "n": 0}
    for step in range(1, cfg.steps + 1):
        model.train()
        poses = source.sample(rng, cfg.batch_poses)
        flip = rng.random(len(poses)) < cfg.mirror_prob
        poses[flip] = mirror_poses(poses[flip])
        target = torch.from_numpy(canonical_features(poses))
        bones = bone_directions(canonicalize(poses))
        negatives = torch.from_numpy(max_bone_angle_deg(bones, bones) >= cfg.neg_angle_deg)
        x = torch.from_numpy(np.concatenate([render_views(poses, rng, cfg.cameras, cfg.model.inputs),
                                             render_views(poses, rng, cfg.cameras, cfg.model.inputs)]))
        e = model.encoder(x)
        e1, e2 = e[:len(poses)], e[len(poses):]
        recon = F.mse_loss(decoder(e), torch.cat([target, target]))
        contrast = contrastive_loss(e1, e2, negatives, cfg.temperature)
        loss = cfg.recon_weight * recon + cfg.contrastive_weight * contrast
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run["recon"] += recon.item()
        run["contrast"] += contrast.item()
        run["n"] += 1
        if step % cfg.val_every == 0 or step == cfg.steps:
            entry = {"step": step, "seconds": round(time.perf_counter() - start, 1),
                     "train_recon": run["recon"] / run["n"], "train_contrast": run["contrast"] / run["n"]}
            entry.update(evaluate_val(model, decoder, val_sets, cfg.hit_angle_deg))
            history.append(entry)
            log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}))
            run = {"recon": 0.0, "contrast": 0.0, "n": 0}
    summary = {"train": dataclasses.asdict(cfg), "data_info": data_info, "history": history,
               "train_seconds": round(time.perf_counter() - start, 1),
               "baseline_pose2d": {v.name: cross_view_hits(v.view_a[:, :26], v.view_b[:, :26], v.bones,
                                                           cfg.hit_angle_deg) for v in val_sets}}
    model.cfg = cfg.model  # restore the requested inference mode (vflip)
    return model.eval(), summary


@torch.inference_mode()
def evaluate_val(model: Vipe, decoder: VipeDecoder, val_sets: list[ValSet], hit_angle: float) -> dict:
    model.eval()
    out = {}
    for v in val_sets:
        ea = model.encoder(torch.from_numpy(v.view_a))
        eb = model.encoder(torch.from_numpy(v.view_b))
        out[f"{v.name}_recon"] = float(F.mse_loss(decoder(ea), torch.from_numpy(v.target)))
        out[f"{v.name}_xview_hit"] = cross_view_hits(ea.numpy(), eb.numpy(), v.bones, hit_angle)
    return out


def train_and_save(cfg: TrainConfig, msr_root: Path | None, out: Path,
                   log: Callable[[str], None] = print) -> dict:
    model, summary = train_vipe(cfg, msr_root, log)
    save_vipe(model, out, extra=summary)
    return summary
