"""A few instances of one model run side by side, each used by one thread at a time.

mediapipe's graphs (the BlazePose person detector, the BlazePose landmark model) run
their inference outside the GIL, but one graph serves one call at a time: with one graph
per stage, the tracker's detector calls of a frame (tiles, search windows) and the pose
stage's athletes run one after the other, and on 2 cores the second core waits. A
``ModelPool`` holds ``workers`` instances and as many threads; ``submit`` hands a call to
whichever instance is free, ``map`` runs a list of calls and returns their results in the
order given. Which instance serves a call does not change its result (the models are
stateless between calls), so a pooled stage gives what the sequential one gives.

With one instance there are no threads at all: ``submit`` runs the call in the caller's
thread, at once (the sequential path, ``workers = 1``).
"""
from __future__ import annotations

import os
import queue
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Generic, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_AUTO_WORKERS = 4


def auto_workers(requested: int) -> int:
    """``requested`` instances, or for 0 one per core this process may run on (at most 4)."""
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


class ModelPool(Generic[T]):
    """``instances`` of one model and one thread per instance (none for a single instance)."""

    def __init__(self, instances: Iterable[T], name: str = "model",
                 close: Callable[[T], Any] | None = None) -> None:
        self.instances: list[T] = list(instances)
        if not self.instances:
            raise ValueError("a ModelPool needs at least one instance")
        self._close = close or (lambda instance: instance.close())  # type: ignore[attr-defined]
        self._free: queue.SimpleQueue[T] = queue.SimpleQueue()
        for instance in self.instances:
            self._free.put(instance)
        self._executor = (ThreadPoolExecutor(len(self.instances), thread_name_prefix=f"pool:{name}")
                          if len(self.instances) > 1 else None)
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self.instances)

    def submit(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        """``fn(instance, *args)`` on a free instance; with one instance, here and now."""
        if self._closed:
            raise RuntimeError("the model pool is closed")
        if self._executor is None:
            done: Future[R] = Future()
            try:
                done.set_result(fn(self.instances[0], *args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                done.set_exception(exc)
            return done
        return self._executor.submit(self._call, fn, args)

    def _call(self, fn: Callable[..., R], args: tuple) -> R:
        instance = self._free.get()  # one per thread: never waits
        try:
            return fn(instance, *args)
        finally:
            self._free.put(instance)

    def map(self, fn: Callable[..., R], items: Iterable[Any]) -> list[R]:
        """``fn(instance, item)`` for every item, side by side; the results in the items' order.

        Every call finishes before the first failure (in the items' order) is raised, so no
        call is still running on an instance when the caller moves on.
        """
        futures = [self.submit(fn, item) for item in items]
        wait(futures)
        return [f.result() for f in futures]

    def close(self) -> None:
        """Wait for the running calls, drop the queued ones, then close every instance."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for instance in self.instances:
            self._close(instance)
