"""VIPE*: the view-invariant pose embedding (VPD supplement, section G).

2D joints (13 COCO-13 joints, VPD-normalized as in ``vpd_stream.skeleton``, plus their
scores: 39 inputs) → a fully connected residual network → a unit-length 32-d embedding,
trained (``offline_train/vipe``) so that different camera views of one 3D pose land close
together. With ``vflip`` the model also embeds the vertically flipped pose and
concatenates both (64-d), as VPD does for diving where athletes turn upside down.

Chirality: the horizontally flipped embedding — what a student trained on mirrored crops
must reproduce — is simply the embedding of the mirrored 2D pose (``embed_poses(...,
flip=True)``); the model keeps left and right apart, so this is a different vector.

Weights: ``vipe_default.safetensors`` with a JSON sidecar (architecture, training data,
sha256 of the weights); ``load_vipe`` checks both and fails with one ``ModelError`` line.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from .weights_file import read_sidecar, sidecar_path, write_model_file
from ..skeleton import FLIP_PERM, JOINT, NUM_JOINTS, TORSO, box_features, missing_joints, normalize_keypoints

FORMAT = "vpd-stream/vipe"
FORMAT_VERSION = 1
INPUT_DIM = 3 * NUM_JOINTS  # 26 normalized coordinates + 13 scores
# VIPE* reads the scores, and is trained with unreliable joints kept at scores 0.05-0.5 and
# dropped ones at score 0 (offline_train/vipe/cameras.py): for its inputs the missing-joint
# rule's threshold is that lowest kept score. On held-out synthetic views the skeleton's 0.5
# instead costs cross-view hits 0.400 -> 0.335 (RESULTS.md, issue 15); Penn's 0/1 scores give
# the same inputs either way.
VIPE_MIN_SCORE = 0.05
INPUT_NORMALIZATIONS = ("torso", "box")
INPUT_DESCRIPTIONS = {
    "torso": "13 COCO-13 joints VPD-normalized (x, y interleaved) then 13 scores",
    "box": "13 COCO-13 joints box-normalized (centre: mean of the present joints; scale: their box's larger side; "
           "x, y interleaved) then 13 scores",
}
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "vipe_default.safetensors"


@dataclass
class VipeConfig:
    hidden: int = 256
    blocks: int = 2
    dim: int = 32
    vflip: bool = False  # also embed the vertically flipped pose: output 2 * dim
    # How the 2D joints are normalized before the encoder: "torso" (the VPD normalization:
    # mid-hip centre, 0.5 / largest torso distance) or "box" (``skeleton.box_features``:
    # mean of the present joints, larger side of their box), which handles joints missing
    # from the torso (Penn's invisible hips) without moving the origin. Old sidecars: torso.
    inputs: str = "torso"

    def __post_init__(self) -> None:
        if self.inputs not in INPUT_NORMALIZATIONS:
            raise ValueError(f"inputs must be one of {', '.join(INPUT_NORMALIZATIONS)}, not {self.inputs!r}")

    @property
    def output_dim(self) -> int:
        return 2 * self.dim if self.vflip else self.dim


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, width),
                                  nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VipeEncoder(nn.Module):
    """(B, 39) normalized joints + scores → (B, dim) unit embeddings."""

    def __init__(self, cfg: VipeConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(INPUT_DIM, cfg.hidden)
        self.blocks = nn.Sequential(*[ResidualBlock(cfg.hidden) for _ in range(cfg.blocks)])
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(self.blocks(self.inp(x))), dim=-1)


def vflip_inputs(x: torch.Tensor) -> torch.Tensor:
    """Vertically flip (B, 39) inputs: negate y. Labels stay (an image flipped upside down
    keeps which limb the detector calls left), re-centred and re-scaled for free since the
    VPD normalization is symmetric under y → −y."""
    y = x.clone()
    y[:, 1:2 * NUM_JOINTS:2] = -y[:, 1:2 * NUM_JOINTS:2]
    return y


class Vipe(nn.Module):
    """The deployable model: the encoder, and with ``vflip`` the 64-d concatenation."""

    def __init__(self, cfg: VipeConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or VipeConfig()
        self.encoder = VipeEncoder(self.cfg)

    @property
    def output_dim(self) -> int:
        return self.cfg.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder(x)
        if self.cfg.vflip:
            e = torch.cat([e, self.encoder(vflip_inputs(x))], dim=-1)
        return e


class VipeDecoder(nn.Module):
    """Training only: embedding → canonicalized 3D pose features."""

    def __init__(self, dim: int, out_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.net(e)


# --- inputs ---------------------------------------------------------------------------

def normalize_batch(xy: np.ndarray) -> np.ndarray:
    """(..., 13, 2) joints in any units → (..., 13, 2) float64 VPD-normalized joints.

    Vectorized ``vpd_stream.skeleton.normalize_pose`` (same result, degenerate torso → 0).
    """
    xy = np.asarray(xy, dtype=np.float64)[..., :2]
    centre = 0.5 * (xy[..., JOINT["left_hip"], :] + xy[..., JOINT["right_hip"], :])
    torso = xy[..., list(TORSO), :]
    largest = np.linalg.norm(torso[..., :, None, :] - torso[..., None, :, :], axis=-1).max(axis=(-1, -2))
    ok = largest >= 1e-6
    scale = np.where(ok, 0.5 / np.where(ok, largest, 1.0), 0.0)
    return (xy - centre[..., None, :]) * scale[..., None, None]


def pose_inputs(poses: np.ndarray, scores: np.ndarray | None = None, flip: bool = False,
                min_score: float = VIPE_MIN_SCORE, inputs: str = "torso") -> np.ndarray:
    """Keypoints (..., 13, 3) with scores, (..., 13, 2) or 26-d features (..., 26) → (..., 39).

    Pixels or already-normalized joints both work (the normalization is idempotent).
    Missing scores count as 1. ``flip`` mirrors the pose horizontally first (swap
    left/right, negate x) — the input whose embedding is the flipped embedding.

    Missing joints (``vpd_stream.skeleton`` rule: score below ``min_score``, default
    ``VIPE_MIN_SCORE``, or non-finite coordinates, e.g. Penn's invisible joints with stale
    positions) are given the
    convention VIPE* is trained with (``offline_train/vipe/cameras.py``): coordinates at
    the hip centre (0, 0 after normalization) and score 0.

    ``inputs`` (``VipeConfig.inputs``): "torso", the VPD normalization, or "box",
    ``skeleton.box_features`` (missing joints at the centre, score 0); both are idempotent.
    """
    if inputs not in INPUT_NORMALIZATIONS:
        raise ValueError(f"inputs must be one of {', '.join(INPUT_NORMALIZATIONS)}, not {inputs!r}")
    arr = np.asarray(poses, dtype=np.float64)
    if arr.shape[-1] == 2 * NUM_JOINTS:
        arr = arr.reshape(*arr.shape[:-1], NUM_JOINTS, 2)
    if arr.ndim < 2 or arr.shape[-2] != NUM_JOINTS or arr.shape[-1] not in (2, 3):
        raise ValueError(f"expected (..., 13, 2|3) keypoints or (..., 26) features, got {np.shape(poses)}")
    if scores is None:
        scores = arr[..., 2] if arr.shape[-1] == 3 else np.ones(arr.shape[:-1])
    scores = np.broadcast_to(np.asarray(scores, dtype=np.float64), arr.shape[:-1])
    kp = np.concatenate([arr[..., :2], scores[..., None]], axis=-1)
    missing = missing_joints(kp, min_score)
    norm = box_features if inputs == "box" else normalize_keypoints
    xy = norm(kp, min_score=min_score).reshape(arr.shape[:-1] + (2,)).astype(np.float64)
    scores = np.where(missing, 0.0, scores)
    if flip:
        xy = xy[..., FLIP_PERM, :].copy()
        xy[..., 0] = -xy[..., 0]
        scores = scores[..., FLIP_PERM]
    lead = arr.shape[:-2]
    return np.concatenate([xy.reshape(*lead, 2 * NUM_JOINTS), np.clip(scores, 0.0, 1.0)], axis=-1).astype(np.float32)


def embed_poses(model: Vipe, poses: np.ndarray, scores: np.ndarray | None = None,
                flip: bool = False, batch_size: int = 8192) -> np.ndarray:
    """Embed 2D poses: (..., 13, 3|2) keypoints or (..., 26) features → (..., output_dim).

    ``flip=True`` gives the embedding of the horizontally mirrored pose (the teacher's
    output for a flipped crop). Deterministic, float32, no gradient.
    """
    x = pose_inputs(poses, scores, flip, inputs=model.cfg.inputs)
    lead = x.shape[:-1]
    flat = torch.from_numpy(x.reshape(-1, INPUT_DIM))
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(flat), batch_size):
            outs.append(model(flat[i:i + batch_size]))
    out = torch.cat(outs).numpy() if outs else np.zeros((0, model.output_dim), np.float32)
    return out.reshape(*lead, model.output_dim).astype(np.float32)


# --- files ----------------------------------------------------------------------------

def save_vipe(model: Vipe, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the encoder weights (.safetensors) and the JSON sidecar; return the path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"VIPE* weights must be a .safetensors file, got {path}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    sidecar = {"config": dataclasses.asdict(model.cfg),
               "input": INPUT_DESCRIPTIONS[model.cfg.inputs],
               "output_dim": model.output_dim, "extra": extra or {}}
    return write_model_file(path, state, sidecar, FORMAT, FORMAT_VERSION, indent=1)


def load_vipe(path: str | Path | None = None, vflip: bool | None = None) -> Vipe:
    """Load VIPE* weights (default: the committed model); ``vflip`` overrides the 64-d mode."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    side = sidecar_path(path)
    meta = read_sidecar(path, FORMAT, FORMAT_VERSION, "VIPE*", "train them with `vpd-stream train-vipe`")
    try:
        cfg = VipeConfig(**meta["config"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"VIPE* sidecar {side} has a bad config ({exc})") from None
    if vflip is not None:
        cfg = dataclasses.replace(cfg, vflip=vflip)
    try:
        model = Vipe(cfg)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ModelError(f"VIPE* sidecar {side} describes no buildable network ({exc}); retrain it") from None
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # safetensors/torch raise several types for a bad file
        raise ModelError(f"VIPE* weights {path} do not fit the architecture in {side} ({exc})") from None
    return model.eval()


@dataclass
class VipeTeacher:
    """A small handle for distillation and the stream: keypoints → (embedding, flipped)."""

    model: Vipe
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None, vflip: bool | None = None) -> "VipeTeacher":
        p = Path(path) if path is not None else DEFAULT_WEIGHTS
        model = load_vipe(p, vflip)
        return cls(model=model, path=str(p), meta=json.loads(sidecar_path(p).read_text(encoding="utf-8")))

    @property
    def dim(self) -> int:
        return self.model.output_dim

    def __call__(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return embed_poses(self.model, keypoints), embed_poses(self.model, keypoints, flip=True)
