"""RAFT optical flow (Teed & Deng, ECCV 2020): the small and large architectures.

Module and parameter names follow torchvision's implementation, so a state dict saved
from ``torchvision.models.optical_flow.raft_small/raft_large`` (the ``.pth`` files the
user downloads elsewhere) fits here unchanged, once converted to safetensors
(``vpd-stream convert-raft``, vpd_stream.models.raft_weights). Nothing is downloaded:
weights come from a file the user provides (``raft_weights.load_raft``). Inputs are RGB in [-1, 1], N×3×H×W with H and W
divisible by 8; the output is the flow after the last update, N×2×H×W, in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError

NormFactory = Callable[[int], nn.Module] | None


class ConvNormAct(nn.Sequential):
    """conv → optional norm → optional ReLU, indexed 0, 1, 2 like torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, *, kernel_size: int, stride: int = 1,
                 norm_layer: NormFactory = None, bias: bool | None = None, activation: bool = True) -> None:
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(cout))
        if activation:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, *, norm_layer: NormFactory, stride: int = 1) -> None:
        super().__init__()
        self.convnormrelu1 = ConvNormAct(cin, cout, kernel_size=3, stride=stride, norm_layer=norm_layer, bias=True)
        self.convnormrelu2 = ConvNormAct(cout, cout, kernel_size=3, norm_layer=norm_layer, bias=True)
        self.downsample: nn.Module = nn.Identity() if stride == 1 else ConvNormAct(
            cin, cout, kernel_size=1, stride=stride, norm_layer=norm_layer, bias=True, activation=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.convnormrelu2(self.convnormrelu1(x))
        return self.relu(self.downsample(x) + y)


class BottleneckBlock(nn.Module):
    def __init__(self, cin: int, cout: int, *, norm_layer: NormFactory, stride: int = 1) -> None:
        super().__init__()
        mid = cout // 4
        self.convnormrelu1 = ConvNormAct(cin, mid, kernel_size=1, norm_layer=norm_layer, bias=True)
        self.convnormrelu2 = ConvNormAct(mid, mid, kernel_size=3, stride=stride, norm_layer=norm_layer, bias=True)
        self.convnormrelu3 = ConvNormAct(mid, cout, kernel_size=1, norm_layer=norm_layer, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity() if stride == 1 else ConvNormAct(
            cin, cout, kernel_size=1, stride=stride, norm_layer=norm_layer, bias=True, activation=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.convnormrelu3(self.convnormrelu2(self.convnormrelu1(x)))
        return self.relu(self.downsample(x) + y)


class FeatureEncoder(nn.Module):
    """Feature / context encoder: downsamples by 8."""

    def __init__(self, *, block: type[nn.Module], layers: tuple[int, ...], norm_layer: NormFactory,
                 strides: tuple[int, ...] = (2, 1, 2, 2)) -> None:
        super().__init__()
        self.convnormrelu = ConvNormAct(3, layers[0], kernel_size=7, stride=strides[0], norm_layer=norm_layer, bias=True)
        self.layer1 = self._two_blocks(block, layers[0], layers[1], norm_layer, strides[1])
        self.layer2 = self._two_blocks(block, layers[1], layers[2], norm_layer, strides[2])
        self.layer3 = self._two_blocks(block, layers[2], layers[3], norm_layer, strides[3])
        self.conv = nn.Conv2d(layers[3], layers[4], kernel_size=1)

    @staticmethod
    def _two_blocks(block: type[nn.Module], cin: int, cout: int, norm_layer: NormFactory, stride: int) -> nn.Sequential:
        return nn.Sequential(block(cin, cout, norm_layer=norm_layer, stride=stride),
                             block(cout, cout, norm_layer=norm_layer, stride=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.layer3(self.layer2(self.layer1(self.convnormrelu(x)))))


class MotionEncoder(nn.Module):
    def __init__(self, *, in_channels_corr: int, corr_layers: tuple[int, ...], flow_layers: tuple[int, int],
                 out_channels: int) -> None:
        super().__init__()
        self.convcorr1 = ConvNormAct(in_channels_corr, corr_layers[0], kernel_size=1)
        self.convcorr2: nn.Module = (ConvNormAct(corr_layers[0], corr_layers[1], kernel_size=3)
                                     if len(corr_layers) == 2 else nn.Identity())
        self.convflow1 = ConvNormAct(2, flow_layers[0], kernel_size=7)
        self.convflow2 = ConvNormAct(flow_layers[0], flow_layers[1], kernel_size=3)
        # two channels short: the raw flow is appended to the output
        self.conv = ConvNormAct(corr_layers[-1] + flow_layers[-1], out_channels - 2, kernel_size=3)
        self.out_channels = out_channels

    def forward(self, flow: Tensor, corr_features: Tensor) -> Tensor:
        corr = self.convcorr2(self.convcorr1(corr_features))
        motion = self.convflow2(self.convflow1(flow))
        return torch.cat([self.conv(torch.cat([corr, motion], dim=1)), flow], dim=1)


class ConvGRU(nn.Module):
    def __init__(self, *, input_size: int, hidden_size: int, kernel_size, padding) -> None:
        super().__init__()
        cin = hidden_size + input_size
        self.convz = nn.Conv2d(cin, hidden_size, kernel_size=kernel_size, padding=padding)
        self.convr = nn.Conv2d(cin, hidden_size, kernel_size=kernel_size, padding=padding)
        self.convq = nn.Conv2d(cin, hidden_size, kernel_size=kernel_size, padding=padding)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class RecurrentBlock(nn.Module):
    def __init__(self, *, input_size: int, hidden_size: int, kernel_size: tuple, padding: tuple) -> None:
        super().__init__()
        self.convgru1 = ConvGRU(input_size=input_size, hidden_size=hidden_size,
                                kernel_size=kernel_size[0], padding=padding[0])
        self.convgru2 = (ConvGRU(input_size=input_size, hidden_size=hidden_size,
                                 kernel_size=kernel_size[1], padding=padding[1]) if len(kernel_size) == 2 else None)
        self.hidden_size = hidden_size

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        h = self.convgru1(h, x)
        return self.convgru2(h, x) if self.convgru2 is not None else h


class FlowHead(nn.Module):
    def __init__(self, *, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_size, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_size, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    def __init__(self, *, motion_encoder: MotionEncoder, recurrent_block: RecurrentBlock, flow_head: FlowHead) -> None:
        super().__init__()
        self.motion_encoder = motion_encoder
        self.recurrent_block = recurrent_block
        self.flow_head = flow_head
        self.hidden_state_size = recurrent_block.hidden_size

    def forward(self, hidden: Tensor, context: Tensor, corr: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([context, self.motion_encoder(flow, corr)], dim=1)
        hidden = self.recurrent_block(hidden, x)
        return hidden, self.flow_head(hidden)


class MaskPredictor(nn.Module):
    """Weights of the convex 8× upsampling (RAFT-large only)."""

    def __init__(self, *, in_channels: int, hidden_size: int, multiplier: float = 0.25) -> None:
        super().__init__()
        self.convrelu = ConvNormAct(in_channels, hidden_size, kernel_size=3)
        self.conv = nn.Conv2d(hidden_size, 8 * 8 * 9, 1, padding=0)
        self.multiplier = multiplier

    def forward(self, x: Tensor) -> Tensor:
        return self.multiplier * self.conv(self.convrelu(x))


def _grid_sample_pixels(img: Tensor, grid_xy: Tensor) -> Tensor:
    """grid_sample with absolute pixel coordinates (align_corners=True)."""
    h, w = img.shape[-2:]
    x, y = grid_xy.split([1, 1], dim=-1)
    x = 2 * x / (w - 1) - 1
    if h > 1:
        y = 2 * y / (h - 1) - 1
    return F.grid_sample(img, torch.cat([x, y], dim=-1), mode="bilinear", align_corners=True)


def _coords_grid(batch: int, h: int, w: int, device: torch.device) -> Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=0).float()[None].repeat(batch, 1, 1, 1)


def _upsample_flow(flow: Tensor, up_mask: Tensor | None, factor: int = 8) -> Tensor:
    n, c, h, w = flow.shape
    if up_mask is None:
        return factor * F.interpolate(flow, size=(h * factor, w * factor), mode="bilinear", align_corners=True)
    mask = torch.softmax(up_mask.view(n, 1, 9, factor, factor, h, w), dim=2)
    patches = F.unfold(factor * flow, kernel_size=3, padding=1).view(n, c, 9, 1, 1, h, w)
    up = torch.sum(mask * patches, dim=2)
    return up.permute(0, 1, 4, 2, 5, 3).reshape(n, c, h * factor, w * factor)


class CorrBlock(nn.Module):
    """All-pairs correlation pyramid, indexed in a (2r+1)² window around each centroid."""

    def __init__(self, *, num_levels: int, radius: int) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.radius = radius
        self.out_channels = num_levels * (2 * radius + 1) ** 2

    def build_pyramid(self, fmap1: Tensor, fmap2: Tensor) -> list[Tensor]:
        n, c, h, w = fmap1.shape
        corr = torch.matmul(fmap1.view(n, c, h * w).transpose(1, 2), fmap2.view(n, c, h * w))
        corr = (corr / torch.sqrt(torch.tensor(float(c)))).reshape(n * h * w, 1, h, w)
        pyramid = [corr]
        for _ in range(self.num_levels - 1):
            corr = F.avg_pool2d(corr, kernel_size=2, stride=2)
            pyramid.append(corr)
        return pyramid

    def index_pyramid(self, pyramid: list[Tensor], coords: Tensor) -> Tensor:
        side = 2 * self.radius + 1
        d = torch.linspace(-self.radius, self.radius, side, device=coords.device)
        # the (di, dj) order is RAFT's, added to (x, y): trained weights depend on it
        delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, side, side, 2)
        n, _, h, w = coords.shape
        centroids = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)
        features = []
        for corr in pyramid:
            features.append(_grid_sample_pixels(corr, centroids + delta).view(n, h, w, -1))
            centroids = centroids / 2
        return torch.cat(features, dim=-1).permute(0, 3, 1, 2).contiguous()


class RAFT(nn.Module):
    def __init__(self, *, feature_encoder: FeatureEncoder, context_encoder: FeatureEncoder, corr_block: CorrBlock,
                 update_block: UpdateBlock, mask_predictor: MaskPredictor | None = None,
                 num_flow_updates: int = 12) -> None:
        super().__init__()
        self.feature_encoder = feature_encoder
        self.context_encoder = context_encoder
        self.corr_block = corr_block
        self.update_block = update_block
        self.mask_predictor = mask_predictor
        self.num_flow_updates = num_flow_updates

    def forward(self, image1: Tensor, image2: Tensor) -> Tensor:
        """Flow from image1 to image2 (N×2×H×W, pixels) after ``num_flow_updates`` refinements."""
        n, _, h, w = image1.shape
        if image2.shape != image1.shape:
            raise ValueError(f"RAFT inputs differ in shape: {tuple(image1.shape)} vs {tuple(image2.shape)}")
        if h % 8 or w % 8:
            raise ValueError(f"RAFT input height and width must be divisible by 8, got {h}×{w}")
        smallest = 8 * 2 ** self.corr_block.num_levels  # the coarsest correlation level needs ≥ 2 cells
        if h < smallest or w < smallest:
            raise ValueError(f"RAFT input must be at least {smallest}×{smallest}, got {h}×{w}")
        fmap1, fmap2 = torch.chunk(self.feature_encoder(torch.cat([image1, image2], dim=0)), 2, dim=0)
        pyramid = self.corr_block.build_pyramid(fmap1, fmap2)
        hidden_size = self.update_block.hidden_state_size
        context_out = self.context_encoder(image1)
        hidden, context = torch.split(context_out, [hidden_size, context_out.shape[1] - hidden_size], dim=1)
        hidden, context = torch.tanh(hidden), F.relu(context)
        coords0 = _coords_grid(n, h // 8, w // 8, image1.device)
        coords1 = coords0.clone()
        for _ in range(self.num_flow_updates):
            corr = self.corr_block.index_pyramid(pyramid, coords1)
            hidden, delta = self.update_block(hidden, context, corr, coords1 - coords0)
            coords1 = coords1 + delta
        up_mask = None if self.mask_predictor is None else self.mask_predictor(hidden)
        return _upsample_flow(coords1 - coords0, up_mask)


@dataclass(frozen=True)
class RaftSpec:
    feature_layers: tuple[int, ...]
    feature_block: type[nn.Module]
    context_layers: tuple[int, ...]
    context_block: type[nn.Module]
    context_norm: str | None
    corr_levels: int
    corr_radius: int
    motion_corr_layers: tuple[int, ...]
    motion_flow_layers: tuple[int, int]
    motion_out: int
    hidden: int
    gru_kernels: tuple
    gru_padding: tuple
    flow_head_hidden: int
    mask_predictor: bool


SPECS: dict[str, RaftSpec] = {
    "large": RaftSpec((64, 64, 96, 128, 256), ResidualBlock, (64, 64, 96, 128, 256), ResidualBlock, "batch",
                      4, 4, (256, 192), (128, 64), 128, 128, ((1, 5), (5, 1)), ((0, 2), (2, 0)), 256, True),
    "small": RaftSpec((32, 32, 64, 96, 128), BottleneckBlock, (32, 32, 64, 96, 160), BottleneckBlock, None,
                      4, 3, (96,), (64, 32), 82, 96, (3,), (1,), 128, False),
}


def build_raft(variant: str = "small", num_flow_updates: int = 12) -> RAFT:
    """An untrained RAFT-small or RAFT-large (torchvision layout), in eval mode."""
    if variant not in SPECS:
        raise ModelError(f"unknown RAFT variant '{variant}'; use 'small' or 'large'")
    s = SPECS[variant]
    context_norm: NormFactory = nn.BatchNorm2d if s.context_norm == "batch" else None
    feature = FeatureEncoder(block=s.feature_block, layers=s.feature_layers, norm_layer=nn.InstanceNorm2d)
    context = FeatureEncoder(block=s.context_block, layers=s.context_layers, norm_layer=context_norm)
    corr = CorrBlock(num_levels=s.corr_levels, radius=s.corr_radius)
    motion = MotionEncoder(in_channels_corr=corr.out_channels, corr_layers=s.motion_corr_layers,
                           flow_layers=s.motion_flow_layers, out_channels=s.motion_out)
    recurrent = RecurrentBlock(input_size=motion.out_channels + s.context_layers[-1] - s.hidden, hidden_size=s.hidden,
                               kernel_size=s.gru_kernels, padding=s.gru_padding)
    update = UpdateBlock(motion_encoder=motion, recurrent_block=recurrent,
                         flow_head=FlowHead(in_channels=s.hidden, hidden_size=s.flow_head_hidden))
    mask = MaskPredictor(in_channels=s.hidden, hidden_size=256) if s.mask_predictor else None
    model = RAFT(feature_encoder=feature, context_encoder=context, corr_block=corr, update_block=update,
                 mask_predictor=mask, num_flow_updates=num_flow_updates)
    return model.eval()


def to_raft_input(rgb_nhwc: Tensor) -> Tensor:
    """uint8 N×H×W×3 RGB → float N×3×H×W in [-1, 1], RAFT's input range."""
    return rgb_nhwc.permute(0, 3, 1, 2).float() / 127.5 - 1.0
