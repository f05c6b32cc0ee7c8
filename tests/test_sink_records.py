"""The JSONL sink's end and gap records, and a gap mark surviving a dropped frame (issue 17)."""
import json

import numpy as np

from vpd_stream.frame import EndOfStream, Frame
from vpd_stream.queues import GAP_KEY, FrameQueue
from vpd_stream.sinks import JsonlSink


def frame(index: int, **annotations) -> Frame:
    f = Frame("cam", index, index / 25, np.zeros((4, 4, 3), np.uint8))
    f.annotations.update(annotations)
    return f


def test_end_record_counts_written_frames_and_says_what_was_dropped(tmp_path):
    out = tmp_path / "o.jsonl"
    sink = JsonlSink(str(out))
    gap = {"lost_seconds": 2.5, "reason": "the feed ended", "reconnect_attempts": 3}
    for f in (frame(0), frame(1), frame(4, **{GAP_KEY: gap})):
        sink.write_frame(f, [])
    sink.end_stream(EndOfStream("cam", frames=7))  # the source decoded 7; 4 were dropped live
    sink.close()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["type"] for r in records] == ["frame", "frame", "gap", "frame", "end"]
    assert records[2] == {"type": "gap", "stream": "cam", "before_frame": 4, "pts": 0.16, **gap}
    assert records[-1] == {"type": "end", "stream": "cam", "frames": 3, "decoded": 7, "dropped": 4}


def test_a_dropped_frame_hands_its_gap_mark_to_the_next_one():
    queue = FrameQueue(2)
    queue.put(frame(0, **{GAP_KEY: {"lost_seconds": 1.0}}), lane="cam", drop_oldest=True)
    queue.put(frame(1), lane="cam", drop_oldest=True)
    dropped = queue.put(frame(2), lane="cam", drop_oldest=True)  # full: frame 0 goes
    assert dropped.index == 0
    kept = queue.get_batch(8, 0.0)
    assert [f.index for f in kept] == [1, 2]
    assert kept[0].annotations[GAP_KEY] == {"lost_seconds": 1.0}
    assert GAP_KEY not in kept[1].annotations
