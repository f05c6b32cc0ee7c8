"""The pipeline runner: chain validation, batching across streams, policies, flushing."""
import threading
import time

import pytest

from clips import make_clip
from vpd_stream.config import SourceConfig
from vpd_stream.errors import PluginError
from vpd_stream.frame import EndOfStream, Event
from vpd_stream.pipeline import Pipeline
from vpd_stream.plugin import Plugin, available_plugins, load_plugin_class, validate_chain
from vpd_stream.queues import FrameQueue
from vpd_stream.sinks import JsonlSink
from vpd_stream.sources import VideoSource
from vpd_stream.testing import InMemorySource


class Counter(Plugin):
    name = "counter"
    provides = ("count",)
    batch_size = 4

    def __init__(self, options=None):
        super().__init__(options)
        self.batches = []
        self.ended = []
        self.seen = {}

    def process(self, batch):
        self.batches.append([(f.stream_id, f.index) for f in batch])
        for f in batch:
            self.seen.setdefault(f.stream_id, []).append(f.index)
            f.annotations["count"] = len(self.seen[f.stream_id])

    def end_stream(self, eos):
        self.ended.append(eos.stream_id)
        eos.events.append(Event(eos.stream_id, None, "end", 1.0, 0, 0, 0.0, 0.0))

    def describe(self, frame):
        return {"count": frame.annotations["count"]}


class NeedsPose(Plugin):
    name = "needs_pose"
    requires = ("pose",)


def sources_for(paths, **kw):
    return [VideoSource(str(p), f"s{i}", SourceConfig(**kw), 25.0) for i, p in enumerate(paths)]


def test_chain_validation_names_missing_requirement():
    with pytest.raises(PluginError, match=r"^\[plugins\.needs_pose\] requires pose"):
        validate_chain([Counter, NeedsPose])
    with pytest.raises(PluginError, match="appears twice"):
        validate_chain([Counter, Counter])
    validate_chain([Counter])


def test_unknown_plugin_is_clear():
    with pytest.raises(PluginError, match="unknown plugin 'nope'.*framerecord"):
        load_plugin_class("nope")


def test_builtin_plugins_are_registered():
    names = set(available_plugins())
    assert {"framerecord", "tracker", "pose", "crop", "flow", "student", "detector", "recognizer"} <= names


def test_third_party_plugin_through_entry_points(tmp_path, monkeypatch):
    (tmp_path / "thirdparty_plugin.py").write_text(
        "from vpd_stream.plugin import Plugin\n"
        "class Hello(Plugin):\n    name = 'hello'\n    provides = ('hello',)\n"
        "    def process(self, batch):\n        [f.annotations.__setitem__('hello', 1) for f in batch]\n")
    dist = tmp_path / "thirdparty_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vpd_stream.plugins]\nhello = thirdparty_plugin:Hello\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = load_plugin_class("hello")
    assert cls.name == "hello" and cls.provides == ("hello",)


def test_two_streams_share_batches_in_order_and_flush(tmp_path):
    paths = [make_clip(tmp_path / f"c{i}.mp4", frames=40) for i in range(2)]
    counter = Counter()
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    summary = Pipeline(sources_for(paths), [counter], [sink], queue_size=8).run()
    assert summary.ok
    assert sorted(counter.ended) == ["s0", "s1"]
    for sid in ("s0", "s1"):
        assert counter.seen[sid] == list(range(40))  # every frame, in order
    assert max(len(b) for b in counter.batches) == 4
    assert any(len({sid for sid, _ in b}) == 2 for b in counter.batches), "no batch mixed the streams"
    lines = out.read_text().splitlines()
    assert sum('"type":"frame"' in l for l in lines) == 80
    assert sum('"label":"end"' in l for l in lines) == 2  # events appended at end of stream reach the sink
    assert all(s.processed == 40 and s.dropped == 0 for s in summary.streams)


class Slow(Plugin):
    name = "slow"
    provides = ("slow",)

    def process(self, batch):
        time.sleep(0.02 * len(batch))


def test_file_sources_never_drop_even_when_downstream_is_slow(tmp_path):
    path = make_clip(tmp_path / "c.mp4", frames=40)
    summary = Pipeline(sources_for([path]), [Slow()], [], queue_size=2).run()
    assert summary.streams[0].processed == 40 and summary.streams[0].dropped == 0


def test_live_policy_drops_oldest_and_counts(tmp_path):
    path = make_clip(tmp_path / "c.mp4", frames=60)
    source = VideoSource(str(path), "live", SourceConfig(live="yes", reconnect_attempts=0), 25.0)
    pipeline = Pipeline([source], [Slow()], [], queue_size=2)
    summary = pipeline.run()
    s = summary.streams[0]
    assert s.dropped > 0 and s.processed + s.dropped == s.decoded
    value = pipeline.metrics.registry.get_sample_value
    # series of an ended stream are removed
    assert value("vpd_frames_dropped_total", {"stream": "live", "reason": "backpressure"}) is None


def test_queue_drop_oldest_keeps_end_of_stream():
    q = FrameQueue(2)
    q.put("a", lane="x", drop_oldest=True)
    q.put(EndOfStream("x"), lane="x", drop_oldest=True)
    dropped = q.put("b", lane="x", drop_oldest=True)
    assert dropped == "a"
    items = q.get_batch(10, 0.0)
    assert isinstance(items[0], EndOfStream)


class Boom(Plugin):
    name = "boom"
    provides = ("boom",)

    def process(self, batch):
        raise RuntimeError("kaput")


def test_plugin_failure_stops_the_run_with_a_message(tmp_path):
    path = make_clip(tmp_path / "c.mp4", frames=20)
    summary = Pipeline(sources_for([path]), [Boom()], [], queue_size=2).run()
    assert not summary.ok and "[plugins.boom] failed: RuntimeError: kaput" in summary.error


def test_stop_drains_and_returns(tmp_path):
    path = make_clip(tmp_path / "c.mp4", frames=200)
    pipeline = Pipeline(sources_for([path]), [Slow()], [], queue_size=4)
    threading.Timer(0.3, pipeline.stop).start()
    summary = pipeline.run()
    s = summary.streams[0]
    assert 0 < s.processed < 200 and s.processed == s.decoded  # nothing decoded was lost


def test_event_printer_shows_the_recognizer_label_and_both_scores() -> None:
    import io

    from vpd_stream.frame import Event
    from vpd_stream.sinks import EventPrinter

    out = io.StringIO()
    printer = EventPrinter(out)
    printer.write_event(Event("cam", 1, "swing", 0.37, 2, 41, 0.08, 1.64))
    labelled = Event("cam", 1, "bowl", 0.37, 2, 41, 0.08, 1.64,
                     label_score=0.875302, detector_label="swing")
    printer.write_event(labelled)
    assert out.getvalue().splitlines() == [
        "[cam] 00:00.08–00:01.64 (frames 2–41) track 1: swing score 0.37",
        "[cam] 00:00.08–00:01.64 (frames 2–41) track 1: bowl 0.88 (swing score 0.37)",
    ]


class CrashingSource(InMemorySource):
    def frames(self, stop):
        raise RuntimeError("decoder bug")
        yield


def test_source_crash_message_hides_the_url_password():
    source = CrashingSource([], stream_id="cam", spec="rtsp://admin:secret@cam.local:554/live")
    summary = Pipeline([source], [Counter()], [], queue_size=2).run()
    error = summary.streams[0].error
    assert "rtsp://admin:***@cam.local:554/live: decoding failed unexpectedly (RuntimeError: decoder bug)" in error
    assert "secret" not in error


class SlowSetup(Counter):
    name = "slow_setup"

    def setup(self, context):
        super().setup(context)
        time.sleep(1.0)  # a model loading


def test_a_streams_rate_counts_from_its_first_decode_not_the_models_setup(tmp_path):
    path = make_clip(tmp_path / "a.mp4", frames=10)
    summary = Pipeline(sources_for([path]), [SlowSetup()], [], queue_size=4).run()
    stream = summary.streams[0]
    assert stream.processed == 10
    assert summary.seconds >= 1.0 > stream.seconds  # the run's seconds hold the setup, the stream's do not
