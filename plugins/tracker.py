"""tracker: find people, follow them with norfair, and pick the athlete(s) among them.

A person detector (plugins.person_detector) runs every ``detect_every`` frames; norfair's
Kalman filters carry the boxes in between and keep identities (IoU matching against the
prediction or the track's last detected box, whichever overlaps more). Broadcast
views show players 60-250 px tall in a 1080p frame, too small for the BlazePose detector
on the whole frame, so on large frames it runs sliced: each detection pass looks in a
search window around the leading tracks (the cheap path: ``window_scale`` × the box, seen
at the detector's scale) and at a share of a sweep over overlapping tiles plus the whole
frame, the sweep completing every ``scan_seconds`` (new people are found within that).
Optional camera-motion compensation (norfair's MotionEstimator) helps panning cameras.
Every core busy: with ``detect_workers`` > 1 (the default on a multi-core machine, for the
BlazePose detector) the detector runs as a pool of instances (plugins.person_detector.
DetectorPool): the regions of one detection pass are detected side by side, and on frames
not sliced the whole-frame detections of a batch, which depend on nothing the tracker
learns, start together before the batch is associated frame by frame. Association and
selection stay sequential, in frame order, so the tracks are those of ``detect_workers = 1``.
Athlete selection (plugins.athlete_selection) scores each track by size, age, detection
support, motion, visibility and an optional region of play, with hysteresis so the choice
does not flicker; each track's frame record says why it is or is not an athlete.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import math

import cv2
import numpy as np

from vpd_stream.annotations import Key, Track
from plugins.athlete_selection import AthleteSelector, SelectionParams
from plugins.model_pool import auto_workers
from plugins.norfair_import import norfair
from plugins.person_detector import (DETECTORS, ONNX_LAYOUTS, DetectorPool, PersonDetector, Region, SlicedDetector,
                                     box_iou, make_detector, region_sees, search_window, tile_grid)
from vpd_stream.errors import ConfigError
from vpd_stream.frame import EndOfStream, Frame
from vpd_stream.plugin import Plugin, PluginContext


@dataclass
class _StreamState:
    tracker: Any  # norfair.Tracker
    selector: AthleteSelector
    motion: Any = None  # norfair MotionEstimator when camera_motion is on
    period: int = 1  # the `period` norfair is told on detection frames (see _state)
    frames: int = 0
    sweep: list[Region] | None = None  # the whole frame and the tiles, visited in turn
    cursor: int = 0  # next region of the sweep
    per_pass: int = 1  # sweep regions visited per detection pass
    budget: float = 0.0  # sweep regions owed (fractional, when the sweep runs slower)
    cold: bool = False  # this pass swept the whole frame because nobody was followed
    fruitless: dict[int, int] = field(default_factory=dict)  # fresh track (initializing_id) -> looks in a row that missed it


class TrackerPlugin(Plugin):
    name = "tracker"
    requires = (Key.RGB,)
    provides = (Key.TRACKS,)
    description = ("person detector (sliced on large frames) + norfair tracking + athlete selection "
                   "(box, id, score, is_athlete, athlete_reason, side)")
    batch_size = 8

    @dataclass
    class Options:
        detector: str = "blazepose"  # blazepose (athletes), hog (crowds of pedestrians) or onnx
        onnx_model: str | None = None  # path of a user ONNX detector (detector = "onnx")
        onnx_layout: str = "auto"  # the ONNX detector's output layout: auto, xyxy, yolov8, yolov5, rtdetr
        min_score: float = 0.5  # detections below this confidence are ignored
        detector_side: int = 0  # longer side of the frame the detector sees; 0 = the detector's default
        detect_every: int = 2  # run the detector on every Nth frame; Kalman prediction in between
        tile: int = -1  # sliced detection: tile side in pixels; -1 = auto (blazepose: a third of the
        # shorter side when that is ≥ 200 px, e.g. 360 at 1080p), 0 = whole frame only
        tile_overlap: float = 0.25  # neighbouring tiles overlap by this fraction
        scan_seconds: float = 1.0  # one sweep over the tiles and the whole frame takes this long
        window_scale: float = 2.5  # search window around a live track, × its longer side
        window_tracks: int = 0  # tracks searched around on every pass; 0 = max_athletes (at least 1)
        settled_scan_factor: int = 3  # while every athlete is well followed, the sweep runs this many times slower
        iou_threshold: float = 0.3  # least IoU for a detection to continue a track
        confirm_detections: int = 2  # 1: report a track from its first detection; 2: from its second
        fresh_looks: int = 3  # a fresh (unconfirmed) track dies after this many looks in a row find nothing
        # there (0: it coasts out its whole life, searched on every pass)
        keep_seconds: float = 1.0  # how long a track coasts on its Kalman prediction without detections
        camera_motion: bool = False  # compensate camera pans with norfair's MotionEstimator
        max_athletes: int = 1  # 1 for skating/diving/gymnastics, 2 for tennis singles
        roi: list[float] | None = None  # region of play as x1, y1, x2, y2 fractions of the frame
        motion_weight: float = 0.5  # how much moving tracks are preferred as athletes
        centre_weight: float = 0.8  # how much central tracks are preferred (edge = 1 - this)
        age_frames: int = 25  # frames until a track's age stops adding to its athlete score
        hysteresis: float = 1.5  # a challenger must outscore the athlete by this factor...
        switch_frames: int = 25  # ...for this many consecutive frames (1 s at 25 fps) to take over
        detect_workers: int = 0  # detector instances run side by side; 0 = one per core (at most 4) for
        # blazepose, 1 for hog and onnx (OpenCV and ONNX Runtime thread inside); 1 = one call at a time

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o.detector not in DETECTORS:
            raise ConfigError(f"[plugins.tracker] detector '{o.detector}' is unknown; use one of {', '.join(DETECTORS)}")
        if o.detect_every < 1 or o.keep_seconds <= 0 or o.max_athletes < 0:
            raise ConfigError("[plugins.tracker] detect_every must be ≥ 1, keep_seconds > 0, max_athletes ≥ 0")
        if o.fresh_looks < 0:
            raise ConfigError(f"[plugins.tracker] fresh_looks must be ≥ 0, got {o.fresh_looks}")
        if o.confirm_detections not in (1, 2):
            raise ConfigError(f"[plugins.tracker] confirm_detections must be 1 or 2, got {o.confirm_detections}")
        if not 0.0 < o.iou_threshold <= 1.0:
            raise ConfigError(f"[plugins.tracker] iou_threshold must be in (0, 1], got {o.iou_threshold}")
        if o.onnx_layout not in ONNX_LAYOUTS:
            raise ConfigError(f"[plugins.tracker] onnx_layout '{o.onnx_layout}' is unknown; use one of {', '.join(ONNX_LAYOUTS)}")
        if (o.scan_seconds <= 0 or o.window_scale < 1.0 or not 0.0 <= o.tile_overlap < 0.9 or o.window_tracks < 0
                or o.settled_scan_factor < 1 or not 0 <= o.detect_workers <= 64):
            raise ConfigError("[plugins.tracker] scan_seconds must be > 0, window_scale ≥ 1, tile_overlap in [0, 0.9), "
                              "window_tracks ≥ 0, settled_scan_factor ≥ 1, detect_workers in [0, 64]")
        if o.roi is not None and (len(o.roi) != 4 or not (o.roi[0] < o.roi[2] and o.roi[1] < o.roi[3])):
            raise ConfigError(f"[plugins.tracker] roi must be [x1, y1, x2, y2] fractions with x1<x2, y1<y2, got {o.roi}")
        self._detector: PersonDetector | None = None
        self._streams: dict[str, _StreamState] = {}
        self.params = SelectionParams(max_athletes=o.max_athletes, roi=tuple(o.roi) if o.roi else None,
                                      motion_weight=o.motion_weight, centre_weight=o.centre_weight, age_frames=o.age_frames,
                                      hysteresis=o.hysteresis, switch_frames=o.switch_frames)

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        o = self.options
        side = o.detector_side or (1152 if o.detector == "hog" else 640)
        workers = auto_workers(o.detect_workers) if o.detector == "blazepose" or o.detect_workers else 1
        detectors = [make_detector(o.detector, min_score=o.min_score, max_side=side, onnx_model=o.onnx_model,
                                   device=context.device, onnx_layout=o.onnx_layout) for _ in range(workers)]
        self._detector = DetectorPool(detectors) if workers > 1 else detectors[0]
        norfair()  # here, not on the first frame (it takes seconds)

    def tile_side(self, width: int, height: int) -> int:
        """The tile side for a frame of this size (0: no tiling)."""
        o = self.options
        if o.tile >= 0:
            return o.tile
        if o.detector != "blazepose":
            return 0
        side = min(width, height) // 3
        return side if side >= 200 else 0

    # -- per stream ------------------------------------------------------------------
    def _state(self, frame: Frame) -> _StreamState:
        state = self._streams.get(frame.stream_id)
        if state is None:
            Tracker = norfair().Tracker  # noqa: N806 - the class

            o = self.options
            # norfair's hit counter starts at `period`, gains 2·period per match (capped at
            # hit_counter_max) and loses 1 per frame; a track dies below 0. Passing
            # period = keep_frames / 2 makes every match refill the track's life to
            # keep_frames, however sporadic the detector; the delay asks for a 2nd match.
            rates = [r for r in (frame.target_fps, frame.source_fps) if r]
            fps = min(rates) if rates else 25.0
            keep_frames = round(o.keep_seconds * fps)
            tiles = tile_grid(frame.width, frame.height, self.tile_side(frame.width, frame.height), o.tile_overlap)
            sweep = [(0, 0, frame.width, frame.height)] + tiles if tiles else None
            passes = max(1, int(o.scan_seconds * fps) // o.detect_every)
            # A person the windows do not follow is seen again once per sweep (at its slower,
            # settled pace): it must live that long.
            slow = passes * o.settled_scan_factor
            life = max(keep_frames, 2 * o.detect_every, 2, (slow + 1) * o.detect_every if sweep else 0)
            period = (life + 1) // 2
            delay = period if o.confirm_detections == 2 else period - 1
            tracker = Tracker(distance_function="iou", distance_threshold=1.0 - o.iou_threshold,
                              hit_counter_max=2 * period, initialization_delay=delay)
            tracker.distance_function = PredictionOrLastBox()  # norfair's constructor takes names or scalar functions
            motion = None
            if o.camera_motion:
                from norfair.camera_motion import MotionEstimator
                motion = MotionEstimator()
            state = _StreamState(tracker, AthleteSelector(self.params), motion, period, sweep=sweep,
                                 per_pass=math.ceil(len(sweep) / passes) if sweep else 1)
            self._streams[frame.stream_id] = state
        return state

    def process(self, batch: list[Frame]) -> None:
        assert self._detector is not None, "setup() was not called"
        ahead = self._detect_ahead(batch)
        for i, frame in enumerate(batch):
            frame.annotations["tracks"] = self._track(frame, ahead.get(i))

    def _pool(self) -> DetectorPool | None:
        """The detector pool behind ``_detector``, when it has more than one instance."""
        det = self._detector.base if isinstance(self._detector, SlicedDetector) else self._detector
        return det if isinstance(det, DetectorPool) and det.workers > 1 else None

    def _detect_ahead(self, batch: list[Frame]) -> dict[int, Any]:
        """Futures of the whole-frame detections of this batch's unsliced frames (by position).

        On a stream not sliced, whether a frame is detected on depends on its position in
        the stream alone (every ``detect_every``-th) and the detector sees the whole frame:
        nothing the tracker learns from earlier frames changes either, so the pool detects
        them all at once while association goes on in frame order.
        """
        pool = self._pool()
        if pool is None:
            return {}
        every = self.options.detect_every
        seen: dict[str, int] = {}
        ahead = {}
        for i, frame in enumerate(batch):
            state = self._state(frame)
            position = state.frames + seen.get(frame.stream_id, 0)
            seen[frame.stream_id] = seen.get(frame.stream_id, 0) + 1
            if state.sweep is None and position % every == 0:
                ahead[i] = pool.submit(lambda frame=frame: frame.rgb)  # pixels made (if lazy) in the worker
        return ahead

    def _regions(self, state: _StreamState, frame: Frame, windows_only: bool = False) -> list[Region] | None:
        """Where this detection pass looks (None: the whole frame, unsliced); ``windows_only``:
        only around the fresh (unconfirmed) tracks."""
        if state.sweep is None:
            return None
        o = self.options
        objects = state.tracker.tracked_objects
        if windows_only:
            return [search_window(_box(obj.estimate), frame.width, frame.height, o.window_scale, 224)
                    for obj in self._candidates(state)]
        if not objects:  # nobody followed (start, or everyone lost): sweep everything now
            state.cursor = 0
            state.cold = True
            return list(state.sweep)
        k = o.window_tracks or max(1, self.params.max_athletes)
        athletes = set(state.selector.athletes)
        confirmed = sorted((obj for obj in objects if not obj.is_initializing),
                           key=lambda obj: (int(obj.id) not in athletes, -state.selector.score_of(int(obj.id))))
        # Leading tracks, plus fresh ones awaiting their confirming second detection.
        chosen = confirmed[:k] + [obj for obj in objects if obj.is_initializing]
        regions = [search_window(_box(obj.estimate), frame.width, frame.height, o.window_scale, 224) for obj in chosen]
        state.budget += state.per_pass / (o.settled_scan_factor if self._settled(state) else 1)
        for _ in range(min(int(state.budget), len(state.sweep))):
            regions.append(state.sweep[state.cursor])
            state.cursor = (state.cursor + 1) % len(state.sweep)
        state.budget -= int(state.budget)
        return regions

    def _candidates(self, state: _StreamState) -> list:
        """Fresh tracks worth a look between passes: all of them until every athlete is well
        followed; then those at least half as tall as the smallest athlete (a player found
        again off his track's prediction, not a poster or a distant spectator)."""
        fresh = [obj for obj in state.tracker.tracked_objects if obj.is_initializing]
        if not fresh or not self._settled(state):
            return fresh
        tracked = {int(obj.id): obj for obj in state.tracker.tracked_objects if obj.id is not None}
        heights = [float(_box(tracked[t].estimate)[3] - _box(tracked[t].estimate)[1])
                   for t in state.selector.athletes if t in tracked]
        least = 0.5 * min(heights) if heights else 0.0
        return [obj for obj in fresh if float(_box(obj.estimate)[3] - _box(obj.estimate)[1]) >= least]

    def _drop_fruitless(self, state: _StreamState, regions: list[Region], fed: set[int]) -> None:
        """Forget fresh tracks that ``fresh_looks`` looks in a row did not find again: a false
        detection (a poster, part of a close-up athlete seen in a tile) would otherwise be
        searched on every pass and between passes for its whole life, a detector call each
        (lunge_cam01: two such tracks, 2.9 detector calls a frame where 1.2 follow the people).
        A real person missed is found again by the sweep."""
        fresh = [obj for obj in state.tracker.tracked_objects if obj.is_initializing]
        looks = {obj.initializing_id: state.fruitless.get(obj.initializing_id, 0) for obj in fresh}
        for obj in fresh:
            if id(obj.last_detection) in fed:
                looks[obj.initializing_id] = 0
            elif any(region_sees(r, _box(obj.estimate), 0.08) for r in regions):
                looks[obj.initializing_id] += 1
        dead = {key for key, n in looks.items() if n >= self.options.fresh_looks}
        if dead:
            state.tracker.tracked_objects = [obj for obj in state.tracker.tracked_objects
                                             if not (obj.is_initializing and obj.initializing_id in dead)]
        state.fruitless = {key: n for key, n in looks.items() if key not in dead}

    def _settled(self, state: _StreamState) -> bool:
        """Every athlete slot is held by a track the detector keeps confirming."""
        sel = state.selector
        return len(sel.athletes) >= self.params.max_athletes and all(
            sel._stats[t].support >= 0.5 for t in sel.athletes if t in sel._stats)

    def _track(self, frame: Frame, ahead: Any = None) -> dict[int, Track]:
        o = self.options
        state = self._state(frame)
        transform = state.motion.update(frame.rgb) if state.motion is not None else None
        fresh = state.sweep is not None and bool(self._candidates(state))
        if state.frames % o.detect_every == 0 or fresh:
            # Between passes, fresh tracks still get a look each frame: the detector misses a
            # small player now and then (a player found again a little off the track's
            # prediction starts a fresh track), and a track unconfirmed for long dies.
            regions = self._regions(state, frame, windows_only=state.frames % o.detect_every != 0)
            if regions is None:
                if ahead is None:
                    found = self._detector.detect(frame.rgb)
                elif isinstance(self._detector, SlicedDetector):
                    found = self._detector.merge_whole(ahead.result())
                else:
                    found = ahead.result()
            else:
                if not isinstance(self._detector, SlicedDetector):
                    self._detector = SlicedDetector(self._detector)
                found = self._detector.detect_regions(frame, regions)  # regions: converted alone (lazy frames)
                found = _drop_cut_views_of_tracked(found, state.tracker.tracked_objects)
            detections = _detections(found)
            objects = state.tracker.update(detections, period=state.period, coord_transformations=transform)
            if state.cold:
                # Cold start: what the sweep found gets a second look, in its search window,
                # on the same frame, so the stream's first frame already reports people.
                state.cold = False
                regions = self._regions(state, frame, windows_only=True)
                detections = _detections(self._detector.detect_regions(frame, regions))
                objects = state.tracker.update(detections, period=state.period)
            fed = {id(d) for d in detections}
            # A track counts as missed only where this pass looked at its scale.
            matched = {int(obj.id): id(obj.last_detection) in fed for obj in objects
                       if regions is None or any(region_sees(r, _box(obj.estimate), 0.08) for r in regions)}
            if regions is not None and o.fresh_looks:
                self._drop_fruitless(state, regions, fed)
        else:
            objects = state.tracker.update([], coord_transformations=transform)
            matched = None
        state.frames += 1
        tracks: dict[int, Track] = {}
        for obj in objects:
            tracks[int(obj.id)] = Track(track_id=int(obj.id), box=_box(obj.estimate),
                                        score=float(obj.last_detection.data), age=int(obj.age))
        athletes = state.selector.update(tracks, frame.width, frame.height, matched)
        for tid in athletes:
            tracks[tid].is_athlete = True
        for tid, track in tracks.items():
            track.reason = state.selector.reasons.get(tid, "")
        if len(athletes) >= 2:
            # The athlete standing lowest in the frame is the one nearest the camera.
            nearest = max(athletes, key=lambda t: tracks[t].box[3])
            for tid in athletes:
                tracks[tid].side = "near" if tid == nearest else "far"
        return dict(sorted(tracks.items()))

    def end_stream(self, eos: EndOfStream) -> None:
        self._streams.pop(eos.stream_id, None)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None
        self._streams.clear()

    # -- output ------------------------------------------------------------------------
    def describe(self, frame: Frame) -> dict[str, Any]:
        tracks = frame.annotations.get("tracks", {})
        out = {}
        for tid, t in tracks.items():
            rec = {"track_id": tid, "box": [round(float(v), 1) for v in t.box], "score": round(t.score, 4),
                   "is_athlete": bool(t.is_athlete), "athlete_reason": t.reason}
            if t.side is not None:
                rec["side"] = t.side
            out[tid] = rec
        return {"tracks": out}

    def draw(self, frame: Frame, image: np.ndarray) -> None:
        scale = max(1, round(max(image.shape[:2]) / 720))
        for tid, t in frame.annotations.get("tracks", {}).items():
            x1, y1, x2, y2 = (int(round(v)) for v in t.box)
            color = (0, 220, 0) if t.is_athlete else (160, 160, 160)
            cv2.rectangle(image, (x1, y1), (x2, y2), color, (3 if t.is_athlete else 1) * scale)
            label = f"{'athlete ' if t.is_athlete else ''}#{tid}{' ' + t.side if t.side else ''}"
            cv2.putText(image, label, (max(0, x1) + 3, max(14 * scale, y1 - 4 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5 * scale, color, scale, cv2.LINE_AA)


def _box(estimate: np.ndarray) -> np.ndarray:
    (x1, y1), (x2, y2) = estimate
    return np.array([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], np.float32)


class PredictionOrLastBox:
    """norfair distance (its vectorized ``get_distances``): 1 - the larger IoU of each
    detection with each track's Kalman prediction and with the box it was last detected at.
    A player who sprints and then stops (a tennis player reaching a wide ball, then walking
    to the net) leaves the constant-velocity prediction overshooting: matched against the
    prediction alone he started a fresh track while the old one coasted off as a ghost
    athlete (tennis_broadcast_rally, frames 64-75)."""

    def get_distances(self, objects: list, candidates: list | None) -> np.ndarray:
        if not objects or not candidates:
            return np.full((len(candidates or ()), len(objects)), np.inf, np.float32)
        boxes = np.stack([_box(c.points) for c in candidates])
        predicted = box_iou(boxes, np.stack([_box(obj.estimate) for obj in objects]))
        last = box_iou(boxes, np.stack([_box(obj.last_detection.points) if obj.last_detection is not None
                                        else _box(obj.estimate) for obj in objects]))
        return (1.0 - np.maximum(predicted, last)).astype(np.float32)


def _detections(found: list) -> list:
    Detection = norfair().Detection  # noqa: N806 - the class
    return [Detection(points=d.box.reshape(2, 2).astype(np.float64), data=d.score)
            for d in found if d.box[2] > d.box[0] and d.box[3] > d.box[1]]


def _drop_cut_views_of_tracked(found: list, objects: list) -> list:
    """A box cut by its region's border shows part of a person: it may start a track (a
    window then sees the person whole), but must not pull a live track onto that part."""
    if not objects or not any(d.cut for d in found):
        return found

    live = np.stack([_box(obj.estimate) for obj in objects])
    keep = []
    for d in found:
        if d.cut and box_iou(d.box, live).max() > 0.05:
            continue
        keep.append(d)
    return keep
