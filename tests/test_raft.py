"""RAFT-small/large: torchvision layout, shapes, dtypes, weight conversion and loading.

No real RAFT weights can be fetched here, so output *quality* is unverified; these tests
hold the architecture to torchvision's published parameter counts and key layout, and
check that a saved state dict, converted once to safetensors, reloads into the same
function (a .pth itself is never loaded).
"""
from __future__ import annotations

import pytest
import torch

from vpd_stream.errors import ModelError
from vpd_stream.models.raft import build_raft, to_raft_input
from vpd_stream.models.raft_weights import load_raft

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# torchvision's Raft_Small_Weights / Raft_Large_Weights meta["num_params"].
TORCHVISION_PARAMS = {"small": 990_162, "large": 5_257_536}


@pytest.mark.parametrize("variant", ["small", "large"])
def test_parameter_count_matches_torchvision(variant):
    model = build_raft(variant)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[variant]


def test_state_dict_uses_torchvision_key_names():
    large = build_raft("large").state_dict()
    for key in ("feature_encoder.convnormrelu.0.weight", "feature_encoder.layer1.0.convnormrelu1.0.bias",
                "feature_encoder.layer2.0.downsample.0.weight", "context_encoder.convnormrelu.1.running_mean",
                "context_encoder.layer3.1.convnormrelu2.1.weight", "feature_encoder.conv.weight",
                "update_block.motion_encoder.convcorr2.0.weight", "update_block.motion_encoder.convflow1.0.weight",
                "update_block.recurrent_block.convgru2.convq.weight", "update_block.flow_head.conv2.bias",
                "mask_predictor.convrelu.0.weight", "mask_predictor.conv.weight"):
        assert key in large, key
    small = build_raft("small").state_dict()
    assert "feature_encoder.layer1.0.convnormrelu3.0.weight" in small  # bottleneck blocks
    assert not any(k.startswith("mask_predictor") for k in small)
    assert not any("convgru2" in k for k in small)
    assert small["update_block.motion_encoder.conv.0.weight"].shape[0] == 80  # 82 - 2 flow channels


@pytest.mark.parametrize("variant", ["small", "large"])
def test_output_shape_and_dtype(variant):
    torch.manual_seed(0)
    model = build_raft(variant, num_flow_updates=1)
    images = torch.randint(0, 256, (2, 128, 136, 3), dtype=torch.uint8)
    with torch.inference_mode():
        flow = model(to_raft_input(images), to_raft_input(images.flip(0)))
    assert flow.shape == (2, 2, 128, 136) and flow.dtype == torch.float32
    assert torch.isfinite(flow).all()
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.zeros(1, 3, 132, 136), torch.zeros(1, 3, 132, 136))
    with pytest.raises(ValueError, match="at least 128"):  # the 4th correlation level would be 1 cell
        model(torch.zeros(1, 3, 64, 96), torch.zeros(1, 3, 64, 96))


def test_input_normalization_range():
    x = to_raft_input(torch.tensor([[[[0, 255, 128]]]], dtype=torch.uint8))
    assert x.shape == (1, 3, 1, 1)
    assert x.min() == -1.0 and x.max() == 1.0


def test_pth_converted_once_then_reloads_to_the_same_function(tmp_path):
    from vpd_stream.models.raft_weights import convert_raft_weights

    torch.manual_seed(1)
    model = build_raft("small", num_flow_updates=1)
    pth = tmp_path / "raft_small_C_T_V2-01064c6d.pth"  # torchvision's file name
    torch.save(model.state_dict(), pth)
    with pytest.raises(ModelError, match="vpd-stream convert-raft"):  # no pickle at load time
        load_raft(pth, "small")
    converted = convert_raft_weights(pth)
    assert converted == tmp_path / "raft_small.safetensors" and converted.with_suffix(".json").is_file()
    loaded = load_raft(converted, "small", num_flow_updates=1)
    a, b = torch.rand(1, 3, 128, 128) * 2 - 1, torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(loaded(a, b), model(a, b))
    # a fresh model is initialised differently: the load is what made them equal
    torch.manual_seed(2)
    fresh = build_raft("small").state_dict()
    assert not torch.equal(fresh["feature_encoder.conv.weight"], loaded.state_dict()["feature_encoder.conv.weight"])


def test_convert_command_through_the_cli(tmp_path):
    from cli_helpers import assert_clean_error, run_cli

    pth = tmp_path / "large.pth"
    torch.save({"state_dict": build_raft("large").state_dict()}, pth)  # a training checkpoint's nesting
    done = run_cli("convert-raft", str(pth), "-o", str(tmp_path / "l.safetensors"))
    assert done.returncode == 0, done.stderr.decode()
    assert '"variant": "large"' in (tmp_path / "l.json").read_text()
    assert_clean_error(run_cli("convert-raft", str(pth), "--variant", "small"), "not a torchvision RAFT")
    junk = tmp_path / "junk.pth"
    torch.save({"note": "not weights"}, junk)
    result = run_cli("convert-raft", str(junk))
    assert_clean_error(result, "junk.pth")
    assert result.returncode == 3


def test_load_errors_are_one_clear_line(tmp_path):
    from safetensors.torch import save_file

    from vpd_stream.models.raft_weights import convert_raft_weights

    with pytest.raises(ModelError, match="does not exist"):
        load_raft(tmp_path / "missing.safetensors")
    bare = tmp_path / "bare.safetensors"  # safetensors without the sidecar that says what it is
    save_file({k: v.contiguous() for k, v in build_raft("small").state_dict().items()}, str(bare))
    with pytest.raises(ModelError, match="no sidecar"):
        load_raft(bare)
    small = tmp_path / "small.pth"
    torch.save(build_raft("small").state_dict(), small)
    converted = convert_raft_weights(small, tmp_path / "s.safetensors")
    with pytest.raises(ModelError, match='raft_variant = "small"'):
        load_raft(converted, "large")
    converted.write_bytes(converted.read_bytes()[:-16])
    with pytest.raises(ModelError, match="sha256"):
        load_raft(converted, "small")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read"):
        convert_raft_weights(bad)
    with pytest.raises(ModelError, match="unknown RAFT variant"):
        build_raft("medium")
