"""detector: online sliding-window BiGRU action detection per athlete track.

Windows. For each track, per-frame features (``pose`` joints or a student ``embedding``)
feed windows of ``window`` (W) frames, one ending every ``stride`` (S) frames; the first
windows of a track start at its first frame and are shorter (head windows [0, e), e < W),
and when the track ends a tail window covers its last W frames. The BiGRU ensemble runs
through ``engines.heads``: ONNX Runtime (exported once and cached; no PyTorch in the process)
unless the run's engine is ``torch``, the reference.

Activation. A frame's activation is a weighted mean over the windows covering it that had
run when it became final. ``weighting = "taper"`` (default) weights a window's frame by
((c + 1) / W) ** 4, c = the frame's context in that window (the fewer frames before and
after it; the stream's own start or end counts as full context): a BiGRU sees little
context near a window's edges, so the window in which the frame is most central dominates
and the result tracks one offline pass over the whole stream. ``"mean"`` is the plain mean.

Finality. Frame f is final once min((f // S) * S + W, f + L + 1) frames have arrived,
L = ``lookahead`` (-1 = W - 1): when the last window covering it has run (W - S to W - 1
frames after f) or L frames after f, whichever is first; windows ending later are not
counted for f, and a final activation never changes (one direction of data flow).

Events. Runs of final activation above the threshold, at least ``min_length`` frames, are
stretched or trimmed about their centre to 0.67-1.33 x the mean training action length. A
run closes when the frame after it is final; its event is emitted on that frame or on the
frame its stretched end arrives, whichever is later (at the track's end, at once). An event
names the head's ``action_classes`` in ``extra["detector_classes"]`` (the swing detector's four
swing classes), which the recognizer holds its class to.
Latency after the run's last frame: min(L, W - 1) + 1 frames, plus up to
(0.67 x mean length - run length) / 2 frames of stretch for a short run.

Cost: each frame is in about W / S windows, i.e. W / S BiGRU steps per frame and model.

Default W = 250 (the training window), S = 25, L = 74, taper: on the 40 concatenated Penn
Action test sequences the online AP is within 0.3 points of the offline single pass at
tIoU 0.3-0.7 and events come p50 76 / p95 121 frames after the true action end (3.0 / 4.8 s
at 25 fps). The full look-ahead (L = 249) matches to 0.0 points but waits p50 237 frames;
L = 49 is within 0.6 points at p50 51, L = 24 off by 2.8; the plain mean at L = 74 is off
by up to 0.9 points (mean |activation difference| 0.014 against 0.0007 tapered).
See RESULTS.md, "Online (sliding-window) detector vs offline single pass".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines import Engine, run_chunked
from engines.heads import ensemble_engine, head_engines
from vpd_stream.annotations import FEATURE_SOURCES, Key, feature_vector
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.heads.intervals import shape_interval
from vpd_stream.heads.windows import (
    WEIGHTINGS,
    combine_windows,
    tail_span,
    window_spans,
    window_weights,
)
from vpd_stream.models.head_io import head_features
from vpd_stream.plugin import Plugin, PluginContext

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_DETECTOR = WEIGHTS_DIR / "penn_swing_detector"


def run_windows(engine: Engine | list[Any], windows: list[np.ndarray]) -> list[np.ndarray]:
    """Ensemble-mean sigmoid activations of equal- or mixed-length windows.

    ``engine`` is an ``ensemble_engine`` (or a list of detector modules, wrapped in one).
    """
    if not isinstance(engine, Engine):
        engine = ensemble_engine(list(engine))
    out: list[np.ndarray | None] = [None] * len(windows)
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_len.setdefault(len(w), []).append(i)
    for idx in by_len.values():  # equal lengths batch without padding: results never depend on padding
        x = np.stack([windows[i] for i in idx]).astype(np.float32, copy=False)
        act = run_chunked(engine, {"windows": x})["activation"]
        for j, i in enumerate(idx):
            out[i] = act[j]
    return out  # type: ignore[return-value]


def sliding_window_activations(engine: Engine | list[Any], features: np.ndarray,
                               window: int, stride: int, lookahead: int = -1,
                               weighting: str = "mean") -> np.ndarray:
    """The offline reference of the plugin's streaming activations (same windows, same weights)."""
    n = len(features)
    spans = window_spans(n, window, stride)
    tail = tail_span(n, window, stride)
    acts = run_windows(engine, [features[s:e] for s, e in spans + ([tail] if tail else [])])
    return combine_windows(n, acts[:len(spans)], acts[len(spans)] if tail else None,
                           window, stride, lookahead, weighting)


def head_features_or_pose(path: str | Path) -> str:
    """What the head at ``path`` was trained on; ``"pose"`` when it cannot be read yet."""
    try:
        return head_features(path)
    except ModelError:
        return "pose"  # setup() reports the missing or broken head in its own words


def check_head_features(plugin: str, path: str | Path, meta: dict, features: str, fps: float | None) -> None:
    """One line when a head's features or their rate are not what this chain gives it."""
    trained = meta.get("features", features)
    if trained != features:
        raise ConfigError(f"{plugin}: head {path} was trained on {trained} features ({meta.get('feature_spec', trained)}), "
                          f"but this chain gives it {features!r}; put "
                          f"{'a student with the same model' if trained == 'embedding' else 'the pose plugin'} "
                          f"in the chain or use a head trained on {features}")
    rate = meta.get("fps")
    if rate and fps and abs(float(rate) - float(fps)) > 0.01 * float(rate):
        raise ConfigError(f"{plugin}: head {path} was trained on features at {float(rate):g} fps, the pipeline runs "
                          f"at {float(fps):g} fps; run with --fps {float(rate):g} or use a head trained at {float(fps):g}")


@dataclass
class TrackState:
    """One track's feature stream, activations and the interval being built."""

    frames: list[int] = field(default_factory=list)  # frame index per position
    pts: list[float] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)
    total: list[float] = field(default_factory=list)  # weighted sum of window activations
    weight: list[float] = field(default_factory=list)  # sum of their weights
    next_end: int = 0  # end of the next window on the stride grid (set on the first frame)
    last_window_end: int = 0
    finalized: int = 0  # positions < finalized are final
    run_start: int | None = None
    run_sum: float = 0.0
    pending: list[tuple[int, int, float]] = field(default_factory=list)  # shaped (start, end, score)
    last_activation: float | None = None
    last_seen: int = 0
    side: str | None = None  # the tracker's near/far side of this athlete, when it knows one

    def __len__(self) -> int:
        return len(self.feats)


class DetectorPlugin(Plugin):
    name = "detector"
    requires = (Key.TRACKS, Key.POSE)
    provides = (Key.ACTIVATION, Key.EVENTS)
    description = "online sliding-window BiGRU action detection per athlete track (events)"
    batch_size = 8
    reads_pixels = False  # features only: frames may let go of their pixels before this stage

    @dataclass
    class Options:
        weights: str = ""  # safetensors head without suffix; default plugins/weights/penn_swing_detector
        features: str = ""  # "pose" (26-d joints) or "embedding" (student); "" = what the head was trained on
        window: int = 250  # frames per window: the training window
        stride: int = 25  # a window ends every stride frames
        lookahead: int = 74  # frames a frame waits for later windows; -1 = window - 1 (all windows)
        weighting: str = "taper"  # "taper": trust frames far from a window's edges; "mean": plain mean
        threshold: float = -1.0  # -1 = the head's own: chosen on its validation folds (best F1), else 0.2
        min_length: int = 3
        stretch_min: float = 0.67
        stretch_max: float = 1.33
        athletes_only: bool = True  # when the tracker marks athletes, follow only them
        max_gap: int = 25  # frames a track may vanish before its state is flushed
        max_batch: int = 64  # windows per engine call

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        o = self.options
        if not o.features:  # the head says what it consumes, so the chain check knows before setup
            o.features = head_features_or_pose(o.weights or DEFAULT_DETECTOR)
        if o.features not in FEATURE_SOURCES:
            raise ConfigError(f"detector: features must be 'pose', 'pose_box' or 'embedding', not {o.features!r}")
        if o.window < 1 or not 1 <= o.stride <= o.window:
            raise ConfigError("detector: need window >= 1 and 1 <= stride <= window")
        if o.lookahead < -1:
            raise ConfigError(f"detector: lookahead must be -1 (window - 1) or at least 0, not {o.lookahead}")
        if o.weighting not in WEIGHTINGS:
            raise ConfigError(f"detector: weighting must be one of {', '.join(WEIGHTINGS)}, not {o.weighting!r}")
        if o.max_batch < 1:
            raise ConfigError(f"detector: max_batch must be at least 1, not {o.max_batch}")
        self.requires = (Key.TRACKS, FEATURE_SOURCES[o.features])
        self.lookahead = o.window - 1 if o.lookahead < 0 else min(o.lookahead, o.window - 1)
        self.states: dict[str, dict[int, TrackState]] = {}
        self.models: list[Any] = []  # the PyTorch modules (torch engine only)
        self.path_note = ""

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        heads = head_engines(self.options.weights or DEFAULT_DETECTOR, "detector", backend=context.engine,
                             max_batch=self.options.max_batch)
        check_head_features("detector", self.options.weights or DEFAULT_DETECTOR, heads.meta,
                            self.options.features, context.target_fps)
        self.models = heads.models
        self.engine = heads.engines[0]
        self.path_note = heads.report(self.name, context.metrics)
        self.dim = int(heads.config["input_dim"])
        self.action = str(heads.meta.get("action", "action"))
        # The classes the head counts as its action (the recognizer keeps an event's class to them).
        self.action_classes = [str(c) for c in heads.meta.get("action_classes") or []]
        self.mean_len = float(heads.meta.get("mean_action_length", 0.0))
        self.threshold = self.options.threshold if self.options.threshold >= 0 else float(heads.meta.get("threshold", 0.2))

    def summary_lines(self) -> list[str]:
        """Which path the ensemble runs on, for the run summary."""
        return [self.path_note] if self.path_note else []

    # -- per frame ----------------------------------------------------------------

    def process(self, batch: list[Frame]) -> None:
        for frame in batch:
            self._process_frame(frame)

    def _tracks_of(self, frame: Frame) -> list[int]:
        tracks = frame.annotations.get("tracks", {}) or {}
        athletes = [tid for tid, t in tracks.items() if getattr(t, "is_athlete", False)]
        return sorted(athletes if (self.options.athletes_only and athletes) else tracks)

    def _process_frame(self, frame: Frame) -> None:
        streams = self.states.setdefault(frame.stream_id, {})
        ready: list[tuple[TrackState, int, int]] = []
        for tid in self._tracks_of(frame):
            feat = feature_vector(frame.annotations, self.options.features, tid)
            st = streams.get(tid)
            if feat is None:
                if st is None or not st.feats:
                    continue  # nothing to hold yet: the track's stream starts at its first feature
                feat = st.feats[-1]  # missing pose: hold the last one
            feat = np.asarray(feat, dtype=np.float32).reshape(-1)
            if feat.shape[0] != self.dim:
                raise ConfigError(f"detector: got {feat.shape[0]}-d {self.options.features} features, "
                                  f"the head expects {self.dim}-d; use weights trained on these features")
            if st is None:
                st = streams[tid] = TrackState(next_end=(self.options.window - 1) % self.options.stride + 1)
            st.frames.append(frame.index)
            st.pts.append(frame.pts)
            st.feats.append(feat)
            st.total.append(0.0)
            st.weight.append(0.0)
            st.last_seen = frame.index
            st.side = getattr((frame.annotations.get("tracks") or {}).get(tid), "side", None) or st.side
            while st.next_end <= len(st):  # the windows of window_spans(), as their last frame arrives
                ready.append((st, max(0, st.next_end - self.options.window), st.next_end))
                st.next_end += self.options.stride
        self._run(ready)
        acts = frame.annotations.setdefault("activation", {})
        for tid, st in list(streams.items()):
            if st.last_seen == frame.index:
                self._finalize(st, len(st), final=False)
                self._emit(frame.stream_id, tid, st, frame.events, frame.index, final=False)
                if st.last_activation is not None:
                    acts[tid] = st.last_activation
            elif frame.index - st.last_seen > self.options.max_gap:
                self._flush(frame.stream_id, tid, st, frame.events, frame.index)
                del streams[tid]

    def _run(self, ready: list[tuple[TrackState, int, int]], tail: bool = False) -> None:
        """Run windows [s, e) and add their weighted activations (a tail window only to open frames)."""
        if not ready:
            return
        windows = [np.stack(st.feats[s:e]) for st, s, e in ready]
        for (st, s, e), act in zip(ready, run_windows(self.engine, windows)):
            w = window_weights(e - s, self.options.window, self.options.weighting, first=s == 0, last=tail)
            for k, (a, wk) in enumerate(zip(act.tolist(), w.tolist())):
                if tail and s + k < st.finalized:
                    continue  # already final (and possibly emitted): leave it as it was
                st.total[s + k] += a * wk
                st.weight[s + k] += wk
            st.last_window_end = max(st.last_window_end, e)

    def _finalize(self, st: TrackState, n: int, final: bool) -> None:
        w, s = self.options.window, self.options.stride
        while st.finalized < n:
            f = st.finalized
            covered = (f // s) * s + w <= n  # the last window covering f has run
            if not (final or covered or f + self.lookahead + 1 <= n):
                break
            a = st.total[f] / st.weight[f] if st.weight[f] > 0 else 0.0
            st.last_activation = a
            self._step_interval(st, f, a)
            st.finalized += 1

    def _step_interval(self, st: TrackState, f: int, a: float) -> None:
        if a > self.threshold:
            if st.run_start is None:
                st.run_start, st.run_sum = f, 0.0
            st.run_sum += a
        elif st.run_start is not None:
            self._close_run(st, f - 1, last=None)

    def _close_run(self, st: TrackState, end: int, last: int | None) -> None:
        start = st.run_start
        assert start is not None
        if end - start + 1 >= self.options.min_length:
            s, e = shape_interval(start, end, self.mean_len, self.options.stretch_min,
                                  self.options.stretch_max, last_frame=last)
            st.pending.append((s, e, st.run_sum / (end - start + 1)))
        st.run_start = None

    def _emit(self, stream_id: str, tid: int, st: TrackState, out: list[Event], emitted: int,
              final: bool) -> None:
        keep = []
        for s, e, score in st.pending:
            if not final and e >= len(st):
                keep.append((s, e, score))  # its (stretched) end has not arrived yet
                continue
            e = min(e, len(st) - 1)
            out.append(Event(stream_id=stream_id, track_id=tid, label=self.action, score=score,
                             start_frame=st.frames[s], end_frame=st.frames[e], start_pts=st.pts[s],
                             end_pts=st.pts[e], emitted_frame=emitted,
                             extra={"detector": self.action, "activation_mean": round(score, 6),
                                    **({"detector_classes": self.action_classes} if self.action_classes else {}),
                                    **({"side": st.side} if st.side else {})}))
        st.pending = keep

    def _flush(self, stream_id: str, tid: int, st: TrackState, out: list[Event], emitted: int) -> None:
        """The track's stream ended: run the tail window, finalize everything, emit."""
        n = len(st)
        if n and st.last_window_end < n:
            self._run([(st, max(0, n - self.options.window), n)], tail=True)
        self._finalize(st, n, final=True)
        if st.run_start is not None:
            self._close_run(st, n - 1, last=n - 1)
        self._emit(stream_id, tid, st, out, emitted, final=True)

    def end_stream(self, eos: EndOfStream) -> None:
        for tid, st in sorted(self.states.pop(eos.stream_id, {}).items()):
            last = st.frames[-1] if st.frames else eos.frames
            self._flush(eos.stream_id, tid, st, eos.events, last)

    # -- output -------------------------------------------------------------------

    def describe(self, frame: Frame) -> dict[str, Any]:
        acts = frame.annotations.get("activation", {})
        return {"tracks": {tid: {"activation": round(float(a), 4)} for tid, a in acts.items()}} if acts else {}

    def draw(self, frame: Frame, image: np.ndarray) -> None:
        import cv2

        tracks = frame.annotations.get("tracks", {}) or {}
        for tid, a in frame.annotations.get("activation", {}).items():
            t = tracks.get(tid)
            if t is None:
                continue
            x1, y1 = int(t.box[0]), int(t.box[1])
            colour = (0, 0, 255) if a > self.threshold else (200, 200, 200)
            cv2.putText(image, f"{self.action} {a:.2f}", (x1, max(15, y1 - 22)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
        for ev in frame.events:
            cv2.putText(image, f"EVENT {ev.label} {ev.start_frame}-{ev.end_frame}", (10, 60),  # below the header
                        cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2)
