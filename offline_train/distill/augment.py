"""Training augmentation of a batch, on the device, in the student's uint8 units.

Inputs are the loader's uint8 tensors: crops (N, H, W, 3) and quantized flow (N, 2, H, W).
Outputs are float tensors in the *same units* (0..255), so they go straight into the
student's own ``InputNormalization`` — training and serving normalize identically.

* random resized crop (area scale 0.5–1, aspect ratio 0.9–1.1) of crop, flow and mask
  together, with the flow's displacements rescaled by the zoom (a crop of width w·W
  shown at W moves 1/w times as many pixels); the target is unchanged because the VPD
  pose is centred and scale-normalized;
* horizontal flip: image mirrored, flow x negated, and the teacher's target flipped
  (left/right joints swapped, x negated, via vpd_stream.skeleton.FLIP_PERM) — for p_t
  and for p_t − p_{t−1} alike, since the flip is linear;
* colour jitter (brightness, contrast, saturation) of the RGB crop;
* background noise: where a foreground mask exists, the background is replaced by noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vpd_stream.skeleton import FLIP_PERM, NUM_JOINTS

CENTER = 127.5  # the uint8 value of zero flow


@dataclass
class AugmentConfig:
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    noise_p: float = 0.5  # chance of background noise, where a mask is available


def flip_target(target: torch.Tensor) -> torch.Tensor:
    """Mirror (N, k·26) targets made of 26-d pose blocks: swap left/right, negate x."""
    n, width = target.shape
    blocks = target.reshape(n, width // (2 * NUM_JOINTS), NUM_JOINTS, 2)
    perm = torch.as_tensor(FLIP_PERM, device=target.device)
    out = blocks[:, :, perm, :].clone()
    out[..., 0] = -out[..., 0]
    return out.reshape(n, width)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def augment_batch(rgb: torch.Tensor, flow: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                  gen: torch.Generator, config: AugmentConfig | None = None,
                  target_flipped: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment one batch; returns float rgb (N,H,W,3), float flow (N,2,H,W), target.

    ``gen`` is a CPU generator (the random draws do not depend on the device), so a run is
    reproducible and the same seed augments the same way on CPU and GPU. Flipped samples
    take their target from ``target_flipped`` (the teacher's output for the mirrored pose:
    VIPE* embeddings are not mirrored by a permutation); without it, from ``flip_target``,
    which is right for 26-d pose targets.
    """
    cfg = config or AugmentConfig()
    n = rgb.shape[0]
    dev = rgb.device
    # Random resized crop, as a per-sample affine map of normalized coordinates.
    area = _uniform(n, *cfg.scale, gen, dev)
    log_r = _uniform(n, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), gen, dev)
    ratio = torch.exp(log_r)
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (_uniform(n, -1.0, 1.0, gen, dev)) * (1.0 - w)
    cy = (_uniform(n, -1.0, 1.0, gen, dev)) * (1.0 - h)
    flips = torch.rand(n, generator=gen) < cfg.flip_p
    sign = torch.where(flips, -1.0, 1.0).to(dev)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    size = (n, 1, rgb.shape[1], rgb.shape[2])
    grid = F.affine_grid(theta, size, align_corners=False)
    x = F.grid_sample(rgb.permute(0, 3, 1, 2).float(), grid, mode="bilinear", align_corners=False)
    fl = F.grid_sample(flow.float(), grid, mode="bilinear", align_corners=False)
    # Displacements grow by the zoom; x also changes sign under the flip.
    gain = torch.stack([sign / w, 1.0 / h], dim=1)[:, :, None, None]
    fl = ((fl - CENTER) * gain + CENTER).clamp(0.0, 255.0)
    # Colour jitter on the crop.
    b = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, gen, dev)[:, None, None, None]
    c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, gen, dev)[:, None, None, None]
    s = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, gen, dev)[:, None, None, None]
    x = x * b
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray.mean(dim=(2, 3), keepdim=True)) * c + gray.mean(dim=(2, 3), keepdim=True)
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = ((x - gray) * s + gray).clamp(0.0, 255.0)
    # Background noise where the athlete's mask says "not the athlete".
    noise_draw = torch.rand(n, generator=gen) < cfg.noise_p
    if mask is not None:
        m = F.grid_sample(mask[:, None].float() / 255.0, grid, mode="bilinear", align_corners=False)
        noise = torch.rand(x.shape, generator=gen).to(dev) * 255.0
        use = noise_draw.to(dev)[:, None, None, None]
        x = torch.where(use, x * m + noise * (1 - m), x)
    if flips.any():
        target = target.clone()
        f = flips.to(dev)
        target[f] = target_flipped[f] if target_flipped is not None else flip_target(target[f])
    return x.permute(0, 2, 3, 1), fl, target
