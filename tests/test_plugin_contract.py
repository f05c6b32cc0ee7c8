"""The typed plugin contract: keys, events as a requirement, one error prefix, module:Class specs."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vpd_stream.annotations import Key
from vpd_stream.errors import ConfigError, ModelError, PluginError
from vpd_stream.frame import Event
from vpd_stream.plugin import Plugin, instantiate, load_plugin_class, validate_chain

VPD = str(Path(sys.executable).with_name("vpd-stream"))


class Labeller(Plugin):
    name = "labeller"
    requires = (Key.TRACKS, Key.EVENTS)


class Finder(Plugin):
    name = "finder"
    requires = ("rgb",)  # plain strings are the same keys
    provides = (Key.TRACKS, Key.EVENTS)


class Picky(Plugin):
    name = "picky"

    @dataclass
    class Options:
        level: int = 1

    def __init__(self, options=None) -> None:
        super().__init__(options)
        if self.options.level < 0:
            raise ConfigError(f"level must be ≥ 0, got {self.options.level}")
        if self.options.level > 10:
            raise ValueError("level above 10 makes no sense")
        if self.options.level == 7:
            raise ModelError("picky: no model for level 7")


def test_keys_equal_their_strings() -> None:
    assert Key.TRACKS == "tracks" and "pose" in (Key.POSE,) and Key("embedding") is Key.EMBEDDING


def test_a_labeller_without_an_event_source_is_refused() -> None:
    with pytest.raises(PluginError, match=r"^\[plugins\.labeller\] requires events"):
        validate_chain([_TracksOnly, Labeller])
    validate_chain([Finder, Labeller])


class _TracksOnly(Plugin):
    name = "tracks_only"
    provides = (Key.TRACKS,)


def test_builtin_recognizers_require_events() -> None:
    for name in ("recognizer", "jmrn"):
        assert Key.EVENTS in load_plugin_class(name).requires
    assert Key.EVENTS in load_plugin_class("detector").provides


def test_cli_refuses_a_chain_with_nothing_to_label_before_decoding(tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    missing_video = tmp_path / "never-opened.mp4"  # the chain is refused before the source is looked at
    proc = subprocess.run([VPD, "run", str(missing_video), "--chain", "tracker,pose,recognizer", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: [plugins.recognizer] requires events, which no earlier plugin in the chain "
                     "provides; add 'detector' before it"], proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("level, kind, message", [
    (-1, ConfigError, "[plugins.picky] level must be ≥ 0, got -1"),
    (11, ConfigError, "[plugins.picky] level above 10 makes no sense"),
    (7, ModelError, "[plugins.picky] no model for level 7"),  # the plugin's own "picky:" prefix is dropped
])
def test_instantiate_gives_every_option_error_one_prefix(level, kind, message) -> None:
    with pytest.raises(kind) as info:
        instantiate(Picky, Picky.Options(level=level))
    assert str(info.value) == message
    assert isinstance(instantiate(Picky, Picky.Options(level=3)), Picky)


def test_module_class_specs_load_without_an_entry_point() -> None:
    assert load_plugin_class("plugins.crop:CropPlugin").name == "crop"
    with pytest.raises(PluginError, match="cannot be imported"):
        load_plugin_class("plugins.no_such_module:CropPlugin")
    with pytest.raises(PluginError, match="no vpd_stream Plugin subclass named 'Nope'"):
        load_plugin_class("plugins.crop:Nope")
    with pytest.raises(PluginError, match="no vpd_stream Plugin subclass named 'crop_square'"):
        load_plugin_class("plugins.crop:crop_square")  # a function is not a plugin


def test_relabel_keeps_the_detector_label_and_the_record_names_both() -> None:
    ev = Event("cam", 3, "swing", 0.42, 10, 30, 0.4, 1.2, extra={"detector": "swing"})
    assert not ev.labelled
    ev.relabel("golf_swing", 0.8765432)
    ev.relabel("bowl", 0.5)  # a second labeller may overwrite the class, never the detector's label
    assert ev.labelled and ev.detector_label == "swing" and ev.label == "bowl"
    record = ev.to_record()
    assert record["label"] == "bowl" and record["detector_label"] == "swing" and record["label_score"] == 0.5
    assert list(record)[-3:] == ["detector", "detector_label", "label_score"]
