"""flow: optical flow between the previous and the current crop, post-processed as VPD.

DIS (OpenCV, no weights) is the default; RAFT-small/large (vpd_stream.models.raft) is the
quality option, with weights the user provides, run through engines/ (TorchEngine). The
flow is then reduced as VPD does (vpd_stream.flowcodec): minus its median, clipped to
±20 px, quantized to 8 bits: 2×128×128 uint8 per track.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vpd_stream.annotations import Key
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.flowcodec import FLOW_CLIP, dequantize_flow, encode_flow
from vpd_stream.frame import Frame
from vpd_stream.plugin import Plugin, PluginContext

DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
METHODS = ("dis", "raft")


class DisFlow:
    """OpenCV's Dense Inverse Search flow on grayscale crops."""

    def __init__(self, preset: str = "fast") -> None:
        if preset not in DIS_PRESETS:
            raise ConfigError(f"[plugins.flow] dis_preset '{preset}' is unknown; use one of {', '.join(DIS_PRESETS)}")
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, prev_rgb: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """Flow (2×H×W float32, pixels) that carries ``prev_rgb`` onto ``rgb``."""
        prev = cv2.cvtColor(prev_rgb, cv2.COLOR_RGB2GRAY)
        cur = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return self._dis.calc(prev, cur, None).transpose(2, 0, 1)

    def batch(self, prevs: list[np.ndarray], curs: list[np.ndarray]) -> list[np.ndarray]:
        return [self(p, c) for p, c in zip(prevs, curs)]


def _raft_uint8_module(model: Any) -> Any:
    """Wrap RAFT so the engine feeds it uint8 N×H×W×3 crops directly (normalization in-model)."""
    import torch
    from torch import nn

    from vpd_stream.models.raft import to_raft_input

    class RaftOnCrops(nn.Module):
        input_names = ("image1", "image2")
        output_names = ("flow",)

        def __init__(self, raft: nn.Module) -> None:
            super().__init__()
            self.raft = raft

        def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
            return self.raft(to_raft_input(image1), to_raft_input(image2))

    return RaftOnCrops(model)


class RaftFlow:
    """RAFT through engines/ (TorchEngine), batched over all crops of a process() call."""

    def __init__(self, weights: str, variant: str, iterations: int, device: str, max_batch: int = 16) -> None:
        from engines.torch_engine import TorchEngine
        from vpd_stream.models.raft_weights import load_raft

        model = load_raft(weights, variant, num_flow_updates=iterations)
        self.engine = TorchEngine(_raft_uint8_module(model), max_batch=max_batch, device=device, precision="fp32")

    def batch(self, prevs: list[np.ndarray], curs: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        step = self.engine.max_batch
        for i in range(0, len(prevs), step):
            flows = self.engine.run({"image1": np.stack(prevs[i:i + step]), "image2": np.stack(curs[i:i + step])})["flow"]
            out.extend(flows.astype(np.float32))
        return out


def find_raft_weights(explicit: str | None, variant: str, model_dir: str | None) -> str:
    """The weights file to use: the configured one, else raft_<variant>.safetensors in model_dir.

    Only converted safetensors load (``vpd-stream convert-raft``); a ``.pth`` found instead
    is named in the error with the command that converts it."""
    if explicit:
        return explicit
    if model_dir:
        candidate = Path(model_dir) / f"raft_{variant}.safetensors"
        if candidate.is_file():
            return str(candidate)
        pth = Path(model_dir) / f"raft_{variant}.pth"
        if pth.is_file():
            raise ModelError(f"{pth} is a pickle-based .pth file, which vpd-stream does not load; convert it once: "
                             f"`vpd-stream convert-raft {pth}` (writes raft_{variant}.safetensors beside it)")
    raise ModelError(
        f"flow method 'raft' needs RAFT-{variant} weights: convert torchvision's raft_{variant} state dict once "
        f"with `vpd-stream convert-raft raft_{variant}.pth` and set [plugins.flow] raft_weights = "
        f"\"path/to/raft_{variant}.safetensors\" (or put it in the model directory); "
        f"or use method = \"dis\", which needs none")


class FlowPlugin(Plugin):
    name = "flow"
    requires = (Key.CROP,)
    provides = (Key.FLOW,)
    description = "optical flow of each crop (DIS or RAFT), minus median, clipped ±20 px, 8-bit"
    batch_size = 16
    parallel_safe = True  # each frame on its own (the crop carries the previous one): replicas may run
    reads_pixels = False  # the crops only

    @dataclass
    class Options:
        method: str = "dis"  # "dis" (OpenCV, no weights) or "raft" (weights required)
        dis_preset: str = "fast"  # ultrafast, fast or medium
        raft_weights: str | None = None  # RAFT .safetensors from `vpd-stream convert-raft` (not a .pth)
        raft_variant: str = "small"  # small or large
        raft_iterations: int = 12  # refinement steps (torchvision's default is 12)

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o.method not in METHODS:
            raise ConfigError(f"[plugins.flow] method '{o.method}' is unknown; use 'dis' or 'raft'")
        if o.raft_variant not in ("small", "large"):
            raise ConfigError(f"[plugins.flow] raft_variant must be 'small' or 'large', got '{o.raft_variant}'")
        if o.raft_iterations < 1:
            raise ConfigError("[plugins.flow] raft_iterations must be ≥ 1")
        self._flow: DisFlow | RaftFlow | None = DisFlow(o.dis_preset) if o.method == "dis" else None

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        o = self.options
        if o.method == "raft":
            weights = find_raft_weights(o.raft_weights, o.raft_variant, context.model_dir)
            self._flow = RaftFlow(weights, o.raft_variant, o.raft_iterations, context.device)

    def process(self, batch: list[Frame]) -> None:
        assert self._flow is not None, "setup() was not called"
        keys: list[tuple[int, int]] = []
        prevs: list[np.ndarray] = []
        curs: list[np.ndarray] = []
        for i, frame in enumerate(batch):
            frame.annotations["flow"] = {}
            for tid, crop in frame.annotations.get("crop", {}).items():
                keys.append((i, tid))
                prevs.append(crop.prev_rgb)
                curs.append(crop.rgb)
        if not keys:
            return
        for (i, tid), flow in zip(keys, self._flow.batch(prevs, curs)):
            batch[i].annotations["flow"][tid] = encode_flow(flow)

    def close(self) -> None:
        engine = getattr(self._flow, "engine", None)
        if engine is not None:
            engine.close()

    def describe(self, frame: Frame) -> dict[str, Any]:
        flows = frame.annotations.get("flow", {})
        # A summary, not the 32 KB field: the mean residual motion of the athlete, in pixels.
        return {"tracks": {tid: {"flow_magnitude": round(float(np.linalg.norm(dequantize_flow(q), axis=0).mean()), 3)}
                           for tid, q in flows.items()}} if flows else {}

    def draw(self, frame: Frame, image: np.ndarray) -> None:
        tracks = frame.annotations.get("tracks", {})
        h, w = image.shape[:2]
        side = max(48, min(h, w) // 6)
        for tid, q in frame.annotations.get("flow", {}).items():
            thumb = cv2.resize(flow_to_bgr(dequantize_flow(q)), (side, side), interpolation=cv2.INTER_NEAREST)
            track = tracks.get(tid)
            x = int(track.box[2]) + 4 if track is not None else w - side
            y = int(track.box[1]) if track is not None else 0
            x, y = min(max(0, x), w - side), min(max(0, y), h - side)
            image[y:y + side, x:x + side] = thumb
            cv2.rectangle(image, (x, y), (x + side - 1, y + side - 1), (255, 255, 255), 1)


def flow_to_bgr(flow_2hw: np.ndarray, max_px: float = FLOW_CLIP / 4) -> np.ndarray:
    """Colour-code flow: hue = direction, brightness = speed (saturating at max_px)."""
    fx, fy = flow_2hw[0].astype(np.float32), flow_2hw[1].astype(np.float32)
    mag, ang = cv2.cartToPolar(fx, fy)
    hsv = np.zeros((*fx.shape, 3), np.uint8)
    hsv[..., 0] = (ang * (90.0 / np.pi)).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / max_px * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
