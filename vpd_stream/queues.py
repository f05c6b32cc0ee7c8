"""Bounded frame queues with per-stream lanes and two policies when full.

``block``: the producer waits (files: never drop a frame). ``drop_oldest``: the oldest
queued *frame* of that lane is dropped and counted (live feeds: never fall behind).
End-of-stream markers are never dropped, and a dropped frame's stream marks (a live feed's
gap record) move to the frame after it. Consumers take batches round-robin across lanes,
so one busy feed cannot starve the others.

A lane is also full when the pixels its frames hold reach ``max_bytes`` (``LANE_BYTES``,
16 MiB by default, ``[pipeline] queue_mb``; a lane always takes one frame however big): frames in flight are bounded
in bytes, not only in count, so a 4K source queues a few frames where a 480p one queues
``capacity``. A frame's bytes are what it holds when queued (its decoded YUV picture, or its
RGB array once converted; ``Frame.pixel_nbytes``).

A batch is bounded the same way: ``get_batch`` stops before the frame that would take its
frames' RGB size (``Frame.rgb_nbytes``: what a stage reading their pixels holds at most, a
decoded picture converting on first use) over ``max_bytes``; a batch always takes one
frame. A stage holds its whole batch until it passes it on, so on 1080p frames (6.2 MB
RGB) the default 16 MiB gives batches of 2 where 480p ones keep the stage's batch size:
lunge_cam01, default chain, 1.15-1.19× real time at 173-177 % CPU and 680-682 MiB peak RSS
with batches of 2, 0.96-1.12× at 159-165 % and 693-697 MiB with the stages' 4-8 (three
alternating pairs, AMD EPYC 2 cores; BENCHMARKS.md "Session 5").
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

from .frame import EndOfStream

# Frame annotations that mark a moment in the stream rather than describe one frame (a live
# feed's outage): when their frame is dropped they move to the next frame of the lane.
GAP_KEY = "source_gap"  # a dict (lost_seconds, reason, reconnects) on the first frame after an outage
CARRIED_MARKS = (GAP_KEY,)
LANE_BYTES = 16 << 20  # pixels one lane may hold (a 1080p frame: 3.1 MB decoded, 6.2 MB RGB)


class FrameQueue:
    def __init__(self, capacity: int, on_depth: Callable[[int], None] | None = None,
                 max_bytes: int | None = LANE_BYTES) -> None:
        self.capacity = max(1, capacity)
        self.max_bytes = max_bytes  # None: count frames only
        self._lanes: dict[str, collections.deque] = {}
        self._bytes: dict[str, int] = {}  # pixel bytes queued per lane
        self._sizes: dict[int, int] = {}  # id(item) -> its bytes when queued
        self._order: list[str] = []
        self._next_lane = 0
        self._size = 0
        self._cond = threading.Condition()
        self._on_depth = on_depth

    def __len__(self) -> int:
        return self._size

    def put(self, item: Any, lane: str = "", drop_oldest: bool = False,
            stop: threading.Event | None = None, on_block: Callable[[bool], None] | None = None) -> Any | None:
        """Queue ``item``; return the item dropped to make room, if any."""
        nbytes = _nbytes(item, "pixel_nbytes")
        with self._cond:
            queue = self._lane(lane)
            dropped = None
            if self._full(lane, queue, nbytes) and not isinstance(item, EndOfStream):
                if drop_oldest:
                    for i, queued in enumerate(queue):
                        if not isinstance(queued, EndOfStream):
                            dropped = queued
                            del queue[i]
                            self._size -= 1
                            self._bytes[lane] = self._bytes.get(lane, 0) - self._sizes.pop(id(dropped), 0)
                            _pass_on_marks(dropped, queue[i] if i < len(queue) else item)
                            break
                else:
                    blocked = False
                    while self._full(lane, queue, nbytes) and not (stop and stop.is_set()):
                        if not blocked and on_block:
                            on_block(True)
                        blocked = True
                        self._cond.wait(0.1)
                    if blocked and on_block:
                        on_block(False)
            queue.append(item)
            if nbytes:
                self._sizes[id(item)] = nbytes
                self._bytes[lane] = self._bytes.get(lane, 0) + nbytes
            self._size += 1
            self._cond.notify_all()
            depth = self._size
        if self._on_depth:
            self._on_depth(depth)
        return dropped

    def get_batch(self, max_items: int, timeout: float, wait: float = 0.5) -> list[Any]:
        """Up to ``max_items`` items; waits up to ``wait`` for the first, then ``timeout`` to fill.

        A batch never continues past an EndOfStream marker of the lane it came from, nor
        past ``max_bytes`` of its frames' RGB pixels (see the module docstring).
        """
        batch: list[Any] = []
        held = 0  # RGB bytes of the frames taken
        with self._cond:
            if not self._size:
                self._cond.wait(wait)
            deadline = time.monotonic() + timeout
            while len(batch) < max_items:
                lane = self._next_lane_with_items()
                if lane is None:
                    remaining = deadline - time.monotonic()
                    if not batch or remaining <= 0:
                        break
                    self._cond.wait(remaining)
                    continue
                nbytes = _nbytes(self._lanes[lane][0], "rgb_nbytes")
                if batch and self.max_bytes is not None and held + nbytes > self.max_bytes:
                    break
                item = self._pop_round_robin()
                held += nbytes
                batch.append(item)
                if isinstance(item, EndOfStream):
                    break
            if batch:
                self._cond.notify_all()
            depth = self._size
        if batch and self._on_depth:
            self._on_depth(depth)
        return batch

    def queued_bytes(self, lane: str | None = None) -> int:
        """Pixel bytes queued in ``lane`` (all lanes: None)."""
        with self._cond:
            return self._bytes.get(lane, 0) if lane is not None else sum(self._bytes.values())

    def _full(self, lane: str, queue: collections.deque, nbytes: int) -> bool:
        if len(queue) >= self.capacity:
            return True
        return (self.max_bytes is not None and nbytes > 0 and len(queue) > 0
                and self._bytes.get(lane, 0) + nbytes > self.max_bytes)

    def _lane(self, lane: str) -> collections.deque:
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = collections.deque()
            self._order.append(lane)
        return queue

    def _next_lane_with_items(self) -> str | None:
        """The lane ``_pop_round_robin`` takes from next (None: all empty)."""
        n = len(self._order)
        for i in range(n):
            lane = self._order[(self._next_lane + i) % n]
            if self._lanes[lane]:
                return lane
        return None

    def _pop_round_robin(self) -> Any | None:
        lane = self._next_lane_with_items()
        if lane is None:
            return None
        self._next_lane = (self._order.index(lane) + 1) % len(self._order)
        queue = self._lanes[lane]
        item = queue.popleft()
        self._size -= 1
        size = self._sizes.pop(id(item), 0)
        if size:
            self._bytes[lane] -= size
        if not queue and isinstance(item, EndOfStream):
            del self._lanes[lane]
            self._bytes.pop(lane, None)
            self._order.remove(lane)
            self._next_lane = 0
        return item


def _nbytes(item: Any, attribute: str) -> int:
    """A frame's ``pixel_nbytes`` or ``rgb_nbytes``; 0 for markers and other items."""
    nbytes = getattr(item, attribute, 0)
    return int(nbytes) if isinstance(nbytes, int) else 0


def _pass_on_marks(dropped: Any, successor: Any) -> None:
    marks = getattr(dropped, "annotations", None)
    target = getattr(successor, "annotations", None)
    if not marks or target is None:
        return
    for key in CARRIED_MARKS:
        if key in marks and key not in target:
            target[key] = marks[key]
