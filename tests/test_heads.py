"""Sequence heads: shapes, padding invariance, every Table S4 arch, safe save/load."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vpd_stream.errors import ModelError
from vpd_stream.models.head_io import HeadBundle, load_heads, save_heads
from vpd_stream.models.heads import ARCHS, Detector, HeadConfig, Recognizer, pad_batch


@pytest.mark.parametrize("arch", ARCHS)
def test_recognizer_archs_shapes(arch: str) -> None:
    torch.manual_seed(0)
    model = Recognizer(HeadConfig("recognizer", 26, 15, arch=arch)).eval()
    x, lengths = pad_batch([np.random.randn(n, 26).astype(np.float32) for n in (7, 12, 3)])
    assert model(x, lengths).shape == (3, 15)


@pytest.mark.parametrize("arch", ["bigru", "bilstm_attn", "cnn"])
def test_padding_does_not_change_a_sequence_result(arch: str) -> None:
    torch.manual_seed(0)
    model = Recognizer(HeadConfig("recognizer", 26, 5, arch=arch)).eval()
    a = np.random.randn(9, 26).astype(np.float32)
    alone = model(*pad_batch([a]))
    padded = model(*pad_batch([a, np.random.randn(20, 26).astype(np.float32)]))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_detector_per_frame_logits() -> None:
    model = Detector(HeadConfig("detector", 26)).eval()
    assert model(torch.randn(2, 30, 26)).shape == (2, 30)


def test_save_load_roundtrip_fp16(tmp_path) -> None:
    torch.manual_seed(0)
    models = [Detector(HeadConfig("detector", 26)).eval() for _ in range(2)]
    save_heads(tmp_path / "det", HeadBundle(models[0].cfg, models, {"action": "swing"}))
    bundle = load_heads(tmp_path / "det", kind="detector")
    assert len(bundle.models) == 2 and bundle.meta["action"] == "swing"
    x = torch.randn(1, 40, 26)
    # Stored as fp16: the loaded ensemble agrees with the original to fp16 precision.
    for a, b in zip(models, bundle.models):
        assert torch.allclose(torch.sigmoid(a(x)), torch.sigmoid(b(x)), atol=5e-3)


def test_load_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ModelError, match="missing"):
        load_heads(tmp_path / "nothing")
    model = Recognizer(HeadConfig("recognizer", 26, 3)).eval()
    save_heads(tmp_path / "rec", HeadBundle(model.cfg, [model]))
    with pytest.raises(ModelError, match="is a recognizer"):
        load_heads(tmp_path / "rec", kind="detector")
    (tmp_path / "rec.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="do not match the sha256"):
        load_heads(tmp_path / "rec")
    side = tmp_path / "rec.json"
    intact = side.read_text()
    side.write_text(intact.replace('"weights_sha256"', '"was_sha256"'))
    with pytest.raises(ModelError, match="no valid weights_sha256"):  # the hash is required (issue 17)
        load_heads(tmp_path / "rec")
    import json

    from vpd_stream.models.weights_file import file_sha256
    meta = json.loads(intact)
    meta["weights_sha256"] = file_sha256(tmp_path / "rec.safetensors")  # the hash of the garbage
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="cannot be read"):
        load_heads(tmp_path / "rec")
    side.write_text(side.read_text().replace('"vpd-stream-head"', '"something-else"'))
    with pytest.raises(ModelError, match="not a head sidecar"):
        load_heads(tmp_path / "rec")
