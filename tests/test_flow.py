"""Flow post-processing (flowcodec), DIS on synthetic motion, and the flow plugin."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from plugins.flow import DisFlow, FlowPlugin, flow_to_bgr
from vpd_stream.annotations import Crop, Track
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.flowcodec import FLOW_CLIP, dequantize_flow, encode_flow, quantize_flow, student_input, subtract_median
from vpd_stream.frame import Frame


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_quantize_round_trip_within_a_tenth_of_a_pixel():
    flow = np.random.default_rng(0).uniform(-FLOW_CLIP, FLOW_CLIP, (2, 128, 128)).astype(np.float32)
    q = quantize_flow(flow)
    assert q.dtype == np.uint8 and q.shape == (2, 128, 128)
    err = np.abs(dequantize_flow(q) - flow).max()
    assert err <= 0.1 and err <= 40 / 255 / 2 + 1e-5


def test_codec_constants_agreed_with_the_student():
    assert FLOW_CLIP == 20.0
    assert quantize_flow(np.zeros((2, 1, 1)))[0, 0, 0] == 128  # 127.5 rounds to even → 128
    assert quantize_flow(np.full((2, 1, 1), 100.0))[0, 0, 0] == 255  # clipped to +20 px
    assert quantize_flow(np.full((2, 1, 1), -100.0))[0, 0, 0] == 0
    np.testing.assert_allclose(dequantize_flow(np.array([0, 255], np.uint8)), [-20.0, 20.0])
    np.testing.assert_allclose(student_input(np.array([0, 255], np.uint8)), [-0.5, 0.5])


def test_encode_removes_the_median_motion():
    flow = np.zeros((2, 32, 32), np.float32)
    flow[0] += 7.0  # the whole crop drifts right by 7 px...
    flow[1, :4, :4] = 15.0  # ...and a small part moves down
    np.testing.assert_allclose(np.median(subtract_median(flow).reshape(2, -1), axis=1), 0.0)
    decoded = dequantize_flow(encode_flow(flow))
    assert abs(decoded[0]).max() < 0.1 and decoded[1, :4, :4].min() > 14.9


def _texture(size: int = 160, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, (size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return np.repeat(smooth.astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize("preset", ["fast", "medium"])
@pytest.mark.parametrize("dx,dy", [(3.0, -2.0), (1.5, 2.5), (-6.0, 0.0)])
def test_dis_recovers_a_known_shift(preset, dx, dy):
    big = _texture()
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(big, shift, big.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    prev, cur = big[16:144, 16:144], moved[16:144, 16:144]
    flow = DisFlow(preset)(prev, cur)
    assert flow.shape == (2, 128, 128) and flow.dtype == np.float32
    inner = flow[:, 16:-16, 16:-16]
    assert abs(float(np.median(inner[0])) - dx) < 0.5
    assert abs(float(np.median(inner[1])) - dy) < 0.5


def _frame_with_crop(prev: np.ndarray, cur: np.ndarray) -> Frame:
    frame = Frame("s", 0, 0.0, np.zeros((200, 200, 3), np.uint8))
    frame.annotations["tracks"] = {1: Track(1, np.array([10, 10, 100, 150], np.float32), 0.9, True)}
    frame.annotations["crop"] = {1: Crop(rgb=cur, prev_rgb=prev, box=np.array([0, 0, 128, 128], np.float32))}
    return frame


def test_flow_plugin_dis_output_and_overlay():
    big = _texture()
    frame = _frame_with_crop(big[16:144, 16:144], big[16:144, 20:148])  # pure translation
    plugin = FlowPlugin()
    plugin.setup(plugin.context)
    plugin.process([frame])
    q = frame.annotations["flow"][1]
    assert q.shape == (2, 128, 128) and q.dtype == np.uint8
    # A uniform translation is all median: what is left is ~0 px (128).
    assert np.median(np.abs(dequantize_flow(q))) < 0.2
    assert "flow_magnitude" in plugin.describe(frame)["tracks"][1]
    image = np.zeros((200, 200, 3), np.uint8)
    plugin.draw(frame, image)
    assert image.any()
    assert flow_to_bgr(dequantize_flow(q)).shape == (128, 128, 3)


def test_flow_plugin_raft_without_weights_is_a_clear_error(tmp_path):
    plugin = FlowPlugin(FlowPlugin.Options(method="raft"))
    plugin.context.model_dir = str(tmp_path)
    with pytest.raises(ModelError, match="needs RAFT-small weights"):
        plugin.setup(plugin.context)
    with pytest.raises(ConfigError):
        FlowPlugin(FlowPlugin.Options(method="farneback"))
    with pytest.raises(ConfigError):
        FlowPlugin(FlowPlugin.Options(dis_preset="slowest"))


def test_flow_plugin_raft_runs_through_the_engine(tmp_path):
    torch = pytest.importorskip("torch")
    from vpd_stream.models.raft import build_raft

    torch.manual_seed(0)
    torch.save(build_raft("small").state_dict(), tmp_path / "raft_small.pth")
    plugin = FlowPlugin(FlowPlugin.Options(method="raft", raft_iterations=2))
    plugin.context.model_dir = str(tmp_path)  # found there by its conventional name
    with pytest.raises(ModelError, match="convert-raft"):  # a .pth is converted once, never loaded
        plugin.setup(plugin.context)
    from vpd_stream.models.raft_weights import convert_raft_weights
    convert_raft_weights(tmp_path / "raft_small.pth")  # -> raft_small.safetensors + sidecar
    plugin.setup(plugin.context)
    assert type(plugin._flow.engine).__name__ == "TorchEngine"
    big = _texture()
    frames = [_frame_with_crop(big[:128, :128], big[2:130, :128]) for _ in range(3)]
    plugin.process(frames)
    for frame in frames:
        q = frame.annotations["flow"][1]
        assert q.shape == (2, 128, 128) and q.dtype == np.uint8
    # Same input, same output: batched frames agree with each other.
    np.testing.assert_array_equal(frames[0].annotations["flow"][1], frames[2].annotations["flow"][1])
