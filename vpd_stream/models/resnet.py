"""The VPD student F: a ResNet-34 over a 5-channel 128×128 input (RGB crop + 2-channel flow).

The network takes the pipeline's own uint8 tensors and normalizes them itself, so the
normalization is part of every exported model and every backend sees identical inputs:

* ``rgb``  — (N, 128, 128, 3) uint8, the crop as the crop plugin stores it (HWC);
  mapped to ±1, then standardized with the per-dataset ``rgb_mean`` / ``rgb_std``.
* ``flow`` — (N, 2, 128, 128) uint8, the flow plugin's quantized flow (x, y), where
  value = round((flow + 20) / 40 * 255); mapped to uint8 / 255 − 0.5 (flow centred to ±0.5).

Output ``embedding`` — (N, d) float32. Written here because torchvision is not a dependency.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
INPUT_NAMES = ("rgb", "flow")
OUTPUT_NAMES = ("embedding",)


@dataclass
class StudentConfig:
    """Everything that fixes the student's architecture and its input normalization."""

    architecture: str = "resnet34"
    dim: int = 26  # 26 for 2D joints, 32 or 64 for VIPE*
    input_size: int = 128
    in_channels: int = 5
    rgb_mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # in ±1 units
    rgb_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])

    def validate(self) -> None:
        if self.architecture not in RESNET_LAYERS:
            raise ValueError(f"architecture must be one of {sorted(RESNET_LAYERS)}, got {self.architecture!r}")
        if self.in_channels != 5:
            raise ValueError(f"the student takes 5 input channels (RGB + 2 flow), got {self.in_channels}")
        if self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")
        if self.input_size < 32 or self.input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {self.input_size}")
        if len(self.rgb_mean) != 3 or len(self.rgb_std) != 3 or min(self.rgb_std) <= 0:
            raise ValueError("rgb_mean and rgb_std need 3 values each, with positive std")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class InputNormalization(nn.Module):
    """uint8 RGB (NHWC) + uint8 flow (NCHW) → one float (N, 5, H, W) tensor."""

    def __init__(self, rgb_mean: list[float], rgb_std: list[float]) -> None:
        super().__init__()
        mean = torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(rgb_std, dtype=torch.float32).view(1, 3, 1, 1)
        # Fold "to ±1, then (x - mean) / std" into one scale and shift per channel.
        # Not persistent: the values come from the checkpoint's sidecar, not the weights.
        self.register_buffer("rgb_scale", 1.0 / (127.5 * std), persistent=False)
        self.register_buffer("rgb_shift", (-1.0 - mean) / std, persistent=False)

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        scale, shift = cast(torch.Tensor, self.rgb_scale), cast(torch.Tensor, self.rgb_shift)
        dtype = scale.dtype
        x = rgb.permute(0, 3, 1, 2).to(dtype) * scale + shift
        f = flow.to(dtype) * (1.0 / 255.0) - 0.5
        return torch.cat([x, f], dim=1)


class StudentResNet(nn.Module):
    """ResNet-34 (or -18) with a 5-channel stem and a d-dimensional linear head."""

    input_names = INPUT_NAMES
    output_names = OUTPUT_NAMES

    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        self.config = config or StudentConfig()
        self.config.validate()
        self.normalize = InputNormalization(self.config.rgb_mean, self.config.rgb_std)
        self.conv1 = nn.Conv2d(self.config.in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        blocks = RESNET_LAYERS[self.config.architecture]
        cin = 64
        stages = []
        for i, (width, count) in enumerate(zip(widths, blocks)):
            layers = []
            for j in range(count):
                layers.append(BasicBlock(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, self.config.dim)
        self._init_weights()

    def _init_weights(self) -> None:
        # The torchvision ResNet initialisation, so distillation starts where the paper did.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d pooled features of an already-normalized (N, 5, H, W) float input."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Training entry point: augmentations work on the float input before the network."""
        return self.fc(self.features(x))

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return self.forward_normalized(self.normalize(rgb, flow))


def build_student(config: StudentConfig, seed: int | None = None) -> StudentResNet:
    """A student with fresh weights; ``seed`` makes the random initialisation reproducible."""
    if seed is None:
        return StudentResNet(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StudentResNet(config)


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Give BatchNorm layers non-trivial running statistics and affine terms (seeded).

    A freshly initialised network has identity BatchNorms; parity and quantization checks
    on such a network would not exercise the folded BN that trained weights have.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                assert m.running_mean is not None and m.running_var is not None  # track_running_stats
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
