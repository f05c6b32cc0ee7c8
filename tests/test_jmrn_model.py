"""JMRN network: shapes, joint selector, projections, safe save/load."""
from __future__ import annotations

import json

import pytest
import torch

from vpd_stream.errors import ModelError
from vpd_stream.models.jmrn import JMRN, JmrnConfig, load_jmrn, save_jmrn

TINY = dict(height=16, width=16, extractor=(4, 4, 8, 8), c_dim=4, selector_hidden=8, cls_width=8,
            proj_hidden=8, proj_dim=6)


def test_shapes_weights_and_projections() -> None:
    torch.manual_seed(0)
    model = JMRN(JmrnConfig(num_classes=5, **TINY)).eval()
    x = torch.rand(3, 13, 3, 16, 16)
    logits, z, w = model(x, return_projections=True)
    assert logits.shape == (3, 5) and z.shape == (3, 13, 6) and w.shape == (3, 13)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3, 13))
    assert bool(((w > 0) & (w < 1)).all())
    torch.testing.assert_close(model(x), logits)
    with pytest.raises(ValueError, match="expects"):
        model(torch.rand(2, 17, 3, 16, 16))


def test_paper_sizes_build() -> None:
    model = JMRN(JmrnConfig(num_classes=15))  # 64×64, 128-128-256-256, 512-wide classifier
    assert model.extractor[0].out_channels == 128 and model.classifier[0].out_channels == 512
    assert model(torch.rand(2, 13, 3, 64, 64)).shape == (2, 15)


def test_save_load_roundtrip_and_bad_files(tmp_path) -> None:
    torch.manual_seed(1)
    model = JMRN(JmrnConfig(num_classes=3, **TINY)).eval()
    path = save_jmrn(tmp_path / "m.safetensors", model, {"height": 16, "width": 16}, ["a", "b", "c"], {"note": 1})
    loaded, meta = load_jmrn(path)
    x = torch.rand(2, 13, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=1e-2)  # fp16 storage
    assert meta["classes"] == ["a", "b", "c"] and meta["note"] == 1
    with pytest.raises(ModelError, match="missing"):
        load_jmrn(tmp_path / "nope.safetensors")
    side = path.with_suffix(".json")
    bad = json.loads(side.read_text())
    bad["config"]["c_dim"] = 7
    bad["weights_sha256"] = ""
    side.write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="no valid weights_sha256"):  # the hash is required (issue 17)
        load_jmrn(path)
    from vpd_stream.models.weights_file import file_sha256
    bad["weights_sha256"] = file_sha256(path)
    side.write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="does not match"):
        load_jmrn(path)
    path.write_bytes(path.read_bytes()[:-10])
    bad["weights_sha256"] = "0" * 64
    side.write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="sha256"):
        load_jmrn(path)


def test_permute_joints_computes_on_maps_what_the_model_computed_on_permuted_maps(tmp_path) -> None:
    """Penn's viewer sides → the person's own: an exact reordering of the joint parameters."""
    import json

    import numpy as np

    from offline_train.jmrn.sides import convert, reads_anatomical_sides
    from vpd_stream.models.jmrn import load_jmrn, permute_joints, save_jmrn
    from vpd_stream.skeleton import FLIP_PERM

    torch.manual_seed(0)
    model = JMRN(JmrnConfig(num_classes=5, height=16, width=16, extractor=(4, 4, 8, 8), c_dim=4,
                            selector_hidden=8, cls_width=8, proj_hidden=8, proj_dim=4))
    x = torch.rand(6, 13, 3, 16, 16)
    model.train()
    model(x)  # running statistics that differ per joint channel
    model.eval()
    for perm in (FLIP_PERM, np.random.default_rng(1).permutation(13)):
        moved = permute_joints(model, perm)
        with torch.no_grad():
            a, _, wa = moved(x, return_projections=True)
            b, _, wb = model(x[:, torch.as_tensor(perm)], return_projections=True)
            plain = model(x)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(wa, wb[:, torch.as_tensor(np.argsort(perm))], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(a, plain, atol=1e-6)  # the permutation does change what it computes
    with pytest.raises(ValueError):
        permute_joints(model, [0] * 13)
    src = save_jmrn(tmp_path / "penn.safetensors", model, {"height": 16, "width": 16}, list("abcde"), {"command": "x"})
    dst = convert(src, tmp_path / "anat.safetensors")
    converted, meta = load_jmrn(dst)
    assert reads_anatomical_sides(meta) and meta["command"] == "x"
    assert not reads_anatomical_sides(json.loads(src.with_suffix(".json").read_text()))
    original, _ = load_jmrn(src)  # both through fp16 storage
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x[:, torch.as_tensor(FLIP_PERM)]), atol=1e-4, rtol=1e-4)
    with pytest.raises(SystemExit):
        convert(dst, tmp_path / "twice.safetensors")
