"""Pose-aware augmentation and the joint-contrastive loss."""
from __future__ import annotations

import numpy as np
import torch

from offline_train.jmrn.augment import GROUPS, AugmentConfig, augment, flip_maps, paa_shifts, shift_maps
from offline_train.jmrn.losses import positive_mask, ramp_weight, supcon_loss
from vpd_stream.heatmaps import flip_heatmaps


def _peak(m: torch.Tensor) -> tuple[int, int]:
    y, x = np.unravel_index(int(m.argmax()), m.shape)
    return int(x), int(y)


def test_integer_shift_is_exact() -> None:
    maps = torch.zeros(1, 13, 3, 16, 16)
    maps[0, :, :, 8, 8] = 1.0
    shift = torch.zeros(1, 13, 2)
    shift[0, 4] = torch.tensor([3.0, -2.0])
    out = shift_maps(maps, shift)
    assert _peak(out[0, 4, 0]) == (11, 6) and _peak(out[0, 0, 0]) == (8, 8)
    assert abs(float(out[0, 4, 0].max()) - 1.0) < 1e-5


def test_paa_moves_each_group_rigidly_and_keeps_structure() -> None:
    g = torch.Generator().manual_seed(0)
    shifts = paa_shifts(50, beta=6, gamma=2, generator=g)
    for joints in GROUPS:
        assert bool((shifts[:, list(joints)] == shifts[:, joints[0:1]]).all())  # a limb never tears
    # Two groups differ by at most 2γ; everything stays within β + γ.
    assert float((shifts[:, 1] - shifts[:, 11]).abs().max()) <= 4
    assert float(shifts.abs().max()) <= 8
    assert len(torch.unique(shifts[:, 0], dim=0)) > 10  # it is random


def test_flip_maps_matches_numpy_flip_and_augment_without_paa_only_flips() -> None:
    x = torch.rand(4, 13, 3, 8, 8)
    np.testing.assert_allclose(flip_maps(x).numpy(), flip_heatmaps(x.numpy()))
    out = augment(x, AugmentConfig(paa=False, flip=True), torch.Generator().manual_seed(3))
    for a, b in zip(out, x):
        assert torch.equal(a, b) or torch.equal(a, flip_maps(b[None])[0])


def test_positive_masks() -> None:
    y = torch.tensor([0, 1, 0])
    m = positive_mask(y, 2)
    assert m.shape == (6, 6) and not bool(m.diagonal().any())
    assert bool(m[0, 2]) and bool(m[0, 3]) and bool(m[0, 5]) and not bool(m[0, 1])
    inst = positive_mask(y, 2, "instance")
    assert bool(inst[0, 3]) and not bool(inst[0, 2]) and int(inst.sum()) == 6
    multi = positive_mask(torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1]]), 1)
    assert bool(multi[0, 2]) and not bool(multi[0, 1])


def test_supcon_prefers_label_clusters() -> None:
    torch.manual_seed(0)
    y = torch.arange(4).repeat(4)
    centres = torch.nn.functional.normalize(torch.randn(4, 13, 8), dim=-1)
    clustered = torch.nn.functional.normalize(centres[y] + 0.05 * torch.randn(16, 13, 8), dim=-1)
    random = torch.nn.functional.normalize(torch.randn(16, 13, 8), dim=-1)
    pos = positive_mask(y, 1)
    assert float(supcon_loss(clustered, pos, 0.1)) < float(supcon_loss(random, pos, 0.1)) - 1.0
    z = random.clone().requires_grad_(True)
    supcon_loss(z, pos).backward()
    assert torch.isfinite(z.grad).all()


def test_ramp() -> None:
    assert [ramp_weight(e, 0.5, 2, 2) for e in range(5)] == [0.0, 0.0, 0.25, 0.5, 0.5]
    assert ramp_weight(0, 0.5, 0, 0) == 0.5
