"""Benchmark: separable heatmap aggregation vs rendering every frame's maps, and the plugin's
per-interval cost. Prints ratios measured in one run.

    python -m offline_train.jmrn.benchmark
"""
from __future__ import annotations

import time

import numpy as np

from vpd_stream.heatmaps import HeatmapConfig, aggregate, time_encoding


def dense_aggregate(grid_xy: np.ndarray, weight: np.ndarray, cfg: HeatmapConfig) -> np.ndarray:
    """Reference: a full (T, J, H, W) stack of Gaussians, then the weighted sum (area-normalized)."""
    ys, xs = np.mgrid[0:cfg.height, 0:cfg.width].astype(np.float32)
    d2 = (xs[None, None] - grid_xy[..., 0, None, None]) ** 2 + (ys[None, None] - grid_xy[..., 1, None, None]) ** 2
    g = np.exp(-d2 / (2 * cfg.sigma ** 2)) * weight[..., None, None]
    enc = time_encoding(len(grid_xy))
    maps = np.einsum("tc,tjyx->jcyx", enc, g)
    return (maps / enc.sum(0)[None, :, None, None]).astype(np.float32)


def _best(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    for size in (32, 64):
        cfg = HeatmapConfig(height=size, width=size, sigma=size / 32)
        xy = rng.uniform(0, size - 1, (75, 13, 2)).astype(np.float32)  # a 3-second interval at 25 fps
        w = np.ones((75, 13), np.float32)
        np.testing.assert_allclose(aggregate(xy, w, cfg), dense_aggregate(xy, w, cfg), atol=1e-4)
        fast, slow = _best(lambda: aggregate(xy, w, cfg)), _best(lambda: dense_aggregate(xy, w, cfg))
        print(f"{size}x{size}, 75 frames: separable {fast * 1e3:.2f} ms, dense {slow * 1e3:.2f} ms, "
              f"speed-up x{slow / fast:.1f}")
    from plugins.jmrn_recognizer import DEFAULT_WEIGHTS, JmrnRecognizerPlugin
    from vpd_stream.plugin import PluginContext

    if DEFAULT_WEIGHTS.is_file():
        plugin = JmrnRecognizerPlugin()
        plugin.setup(PluginContext())
        kp = np.concatenate([rng.uniform(0, 500, (75, 13, 2)), np.ones((75, 13, 1))], -1).astype(np.float32)
        per = _best(lambda: plugin.classify(kp), 10)
        print(f"plugin: one 75-frame interval classified in {per * 1e3:.1f} ms "
              f"({75 / 25 / per:.0f}x faster than the 3 s it covers)")


if __name__ == "__main__":
    main()
