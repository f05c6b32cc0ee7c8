"""The shipped Grafana dashboard queries only metrics the pipeline really exports."""
import json
import re
from pathlib import Path

from vpd_stream.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "vpd-stream-dashboard.json"


def test_dashboard_metrics_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set()
    for family in Metrics().registry.collect():
        exported.add(family.name)
        exported.update(s.name for s in family.samples)
        kind = family.type
        if kind == "counter":
            exported.add(family.name + "_total")
        if kind == "histogram":
            exported.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"\bvpd_[a-z_]+", target["expr"]))
    assert used and used <= exported, used - exported
    names = [n for n in exported if n.startswith("vpd_")]
    assert all(re.fullmatch(r"vpd_[a-z_]+", n) for n in names)
