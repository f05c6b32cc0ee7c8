"""The JMRN click commands: table assembly, clear errors, and a quick real training run."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from offline_train.commands.jmrn import eval_jmrn, train_jmrn


def test_table_from_cached_parts(tmp_path) -> None:
    out = tmp_path / "runs"
    out.mkdir()
    (out / "full_proposed.json").write_text(json.dumps({"top1": 0.9123}))
    (out / "fewshot_k4_s0.json").write_text(json.dumps({"top1": 0.5}))
    (out / "fewshot_k4_s1.json").write_text(json.dumps({"top1": 0.7}))
    (out / "fusion.json").write_text(json.dumps({"fused_top1": 0.95, "equal_top1": 0.94, "weights": [0.6, 0.4]}))
    results = tmp_path / "R.md"
    res = CliRunner().invoke(eval_jmrn, ["--out", str(out), "--part", "table", "--results", str(results),
                                         "--data", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = results.read_text()
    assert "| 91.2 |" in text and "| 4 | 2 of 5 | 50.0, 70.0 | 60.0 |" in text and "95.0" in text
    assert "| 32 | 0 of 5 | — | — |" in text


def test_missing_data_is_one_clear_line(tmp_path) -> None:
    from vpd_stream.errors import ConfigError

    res = CliRunner().invoke(eval_jmrn, ["--data", str(tmp_path / "nope"), "--part", "full"])
    assert isinstance(res.exception, ConfigError) and "--data" in str(res.exception)
    res = CliRunner().invoke(eval_jmrn, ["--out", str(tmp_path), "--part", "fusion", "--data", str(tmp_path)])
    assert res.exit_code != 0
    res = CliRunner().invoke(train_jmrn, ["--quick", "--data", str(tmp_path)])
    assert isinstance(res.exception, ConfigError) and "-o" in str(res.exception)


@pytest.mark.slow
def test_train_quick_writes_a_loadable_model(data_dir, tmp_path) -> None:
    from vpd_stream.models.jmrn import load_jmrn

    out = tmp_path / "j.safetensors"
    res = CliRunner().invoke(train_jmrn, ["--data", str(data_dir / "penn_action"), "-o", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    model, meta = load_jmrn(out)
    assert meta["quick"] is True and len(meta["classes"]) == 15 and "test top-1" in res.output
    assert meta["penn_sides"] == "anatomical" and meta["heatmap"]["min_score"] == 0.5  # the stream's conventions
