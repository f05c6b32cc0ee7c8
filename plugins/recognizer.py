"""recognizer: the fine-grained class of each detected interval.

Two methods: ``bigru`` (default) runs the committed BiGRU head through ``engines.heads``
(ONNX Runtime, exported once and cached, no PyTorch in the process; the PyTorch reference when
the run's engine is ``torch``) and sums class probabilities over the flipped view; ``nns`` finds the interval's nearest
sequence in an NNS index (DTW, symmetricP2, every flip combination; build the index with
`vpd-stream train nns-index`) and reports the share of the ``neighbours`` nearest index
sequences that agree with the label. Keeps a bounded per-track history of features (missing frames hold the last feature) and
labels every event it sees in ``frame.events`` / ``eos.events`` that belongs to a track
it follows: ``event.label`` becomes the class, ``event.extra`` gets the class score and
the detector's own label.

``unknown`` (default on): a head trained by ``vpd-stream train recognizer|nns-index --labels``
records a bound calibrated on validation data (``offline_train.sport_heads``): a BiGRU
head's ``unknown_below`` (class probability), an index's ``unknown_above`` (nearest DTW
cost). Outside it the event's label is ``unknown`` and ``extra["nearest_class"]`` keeps the
class it would have said. Heads without a bound never say unknown. ``features`` defaults to
what the head (or index) was trained on, so the chain check asks the chain for it.

``match_detector`` (default on): an event from a detector that names the classes it finds
(``extra["detector_classes"]``, from its head's ``action_classes``: the swing detector's
are tennis_forehand, tennis_serve, baseball_swing, golf_swing) is ``unknown`` when the
recognizer's class is not one of them — the two heads disagree on what happened
(``lunge_cam02``: a swing to the detector, jump_rope 0.77 to the BiGRU).

Spans (``spans``, default on): the recognizer is also an event source for trimmed actions
that no detector looks for (a squat, a clean and jerk: the swing detector only finds
swings). Every ``span_stride`` frames of a followed track (the athletes, when the tracker
marks them) it classifies the windows of ``span_lengths`` frames ending there, and the
track's whole span (``history`` frames at most) when the track ends. Spans are classified
by NNS-DTW against ``span_index`` (default: the committed index of Penn Action's train
clips, ``plugins/weights/penn_nns``; with ``method = "nns"``, ``index``): a span is a
candidate when its nearest index sequence costs at most the index's ``span_unknown_above``
(the median nearest cost of the index's own correctly labelled clips, leave-one-out) and at
least ``span_vote`` of its ``neighbours`` nearest share the class. Overlapping candidates of
one class are one event (label = the class, ``detector_label`` = "span", score = the best
vote), emitted at the first evaluation that no longer extends it, or at the track's end
(``vpd_stream.heads.spans``). A span event of the class of an overlapping detector event
already labelled on the same track is not emitted again. Why NNS and this bound: on the
real clips the BiGRU's class probability is high on footage with no Penn class in it
(baseball_pitch 0.96 over a pedestrian), the nearest DTW cost is not (RESULTS.md, issue 15).
A head of your own (``weights``) gets spans only with a ``span_index`` on its features.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.heads import head_engines
from vpd_stream.annotations import FEATURE_SOURCES, Key, feature_vector
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.heads.ensemble import predict_proba
from vpd_stream.heads.spans import SpanGroup, close_all, merge_candidates, windows_ending
from vpd_stream.models.nns_index import index_meta, load_nns_index
from vpd_stream.plugin import Plugin, PluginContext
from vpd_stream.skeleton import flip_features

from .detector import check_head_features, head_features_or_pose

DEFAULT_RECOGNIZER = Path(__file__).resolve().parent / "weights" / "penn_recognizer"
DEFAULT_SPAN_INDEX = Path(__file__).resolve().parent / "weights" / "penn_nns"
UNKNOWN_LABEL = "unknown"


def _model_features(options: Any) -> str:
    if options.method != "nns":
        return head_features_or_pose(options.weights or DEFAULT_RECOGNIZER)
    if not options.index:
        return "pose"  # __init__ says that an index is needed
    try:
        return str(index_meta(options.index).get("features") or "pose")
    except ModelError:
        return "pose"  # setup() reports the missing or broken index in its own words


class RecognizerPlugin(Plugin):
    name = "recognizer"
    requires = (Key.TRACKS, Key.POSE, Key.EVENTS)
    provides = (Key.LABEL,)
    description = ("labels each detected interval with a fine-grained class (BiGRU head or NNS-DTW); "
                   "span events for trimmed actions of each athlete track (NNS-DTW, strict bound)")
    batch_size = 8
    reads_pixels = False  # features only

    @dataclass
    class Options:
        method: str = "bigru"  # "bigru" (the weights below) or "nns" (DTW against `index`)
        weights: str = ""  # default plugins/weights/penn_recognizer (15 Penn Action classes)
        index: str = ""  # NNS index for method = "nns" (`vpd-stream train nns-index --out PATH`)
        neighbours: int = 5  # nns: the label score is the share of this many nearest that agree
        features: str = ""  # "pose" or "embedding"; "" = what the head (or index) was trained on
        unknown: bool = True  # say UNKNOWN_LABEL outside what training saw (the head's calibrated bound)
        match_detector: bool = True  # unknown when the class is not one of the event's detector_classes
        history: int = 1500  # frames of features kept per track
        flip_tta: bool = True  # also use the flipped view (pose: mirrored joints; embedding: its flipped embedding)
        spans: bool = True  # also emit events for spans of each followed track (NNS against span_index)
        span_index: str = ""  # "" = `index` with method "nns", else plugins/weights/penn_nns with the default head
        span_vote: float = 0.8  # share of the `neighbours` nearest that must have the nearest's class
        span_lengths: tuple[int, ...] = (50, 100, 200)  # window lengths (frames) classified every span_stride
        span_stride: int = 25  # frames between span evaluations of a track
        span_min_whole: int = 25  # a track's whole span is classified at its end when at least this long
        athletes_only: bool = True  # spans: when the tracker marks athletes, follow only them
        max_gap: int = 25  # spans: frames a track may vanish before its whole span is classified

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        if not self.options.features:  # the head says what it consumes, so the chain check knows before setup
            self.options.features = _model_features(self.options)
        if self.options.features not in FEATURE_SOURCES:
            raise ConfigError(f"recognizer: features must be 'pose', 'pose_box' or 'embedding', not {self.options.features!r}")
        if self.options.method not in ("bigru", "nns"):
            raise ConfigError(f"recognizer: method must be 'bigru' or 'nns', not {self.options.method!r}")
        if self.options.method == "nns" and not self.options.index:
            raise ConfigError("recognizer: method = 'nns' needs `index`, a file from `vpd-stream train nns-index`")
        if self.options.neighbours < 1:
            raise ConfigError(f"recognizer: neighbours must be at least 1, got {self.options.neighbours}")
        o = self.options
        if o.span_stride < 1 or o.span_min_whole < 1 or o.max_gap < 0 or any(n < 2 for n in o.span_lengths):
            raise ConfigError("recognizer: need span_stride >= 1, span_min_whole >= 1, max_gap >= 0 and "
                              f"span_lengths of at least 2 frames, got {list(o.span_lengths)}")
        if o.spans and o.span_lengths and max(o.span_lengths) > o.history:
            raise ConfigError(f"recognizer: span_lengths up to {max(o.span_lengths)} frames need history >= that, "
                              f"not {o.history}")
        self.requires = (Key.TRACKS, FEATURE_SOURCES[self.options.features], Key.EVENTS)
        self.history: dict[str, dict[int, OrderedDict[int, np.ndarray]]] = {}
        self.path_note = ""
        self.span_dtw: Any = None  # set up in setup() when spans search an index
        self.spans: dict[str, dict[int, _SpanTrack]] = {}
        self.labelled: dict[str, dict[int, list[tuple[str, int, int]]]] = {}  # detector events' classes

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        if self.options.method == "nns":
            source = load_nns_index(self.options.index)
            meta, self.index_labels = source.meta, source.labels
            self.classes, self.dim = source.classes, source.dim
            self.dtw_index, self.dtw_index_flipped = _dtw_indexes(source)
        else:
            # Every network runs through engines/: ONNX Runtime, or the torch reference (--engine torch).
            heads = head_engines(self.options.weights or DEFAULT_RECOGNIZER, "recognizer", backend=context.engine,
                                 max_batch=100)
            self.engines = heads.engines
            self.path_note = heads.report(self.name, context.metrics)
            meta = heads.meta
            self.classes = list(meta.get("classes") or [str(i) for i in range(int(heads.config.get("num_classes", 1)))])
            self.dim = int(heads.config["input_dim"])
        check_head_features("recognizer", self.options.index if self.options.method == "nns" else
                            (self.options.weights or DEFAULT_RECOGNIZER), meta, self.options.features, context.target_fps)
        # Outside what training saw: below the calibrated class probability (bigru) or above the
        # calibrated nearest DTW cost (nns); heads without a calibration never say unknown.
        self.unknown_below = float(meta.get("unknown_below", 0.0)) if self.options.unknown else 0.0
        self.unknown_above = float(meta.get("unknown_above", float("inf"))) if self.options.unknown else float("inf")
        self.flip = flip_features if (self.options.flip_tta and self.options.features in ("pose", "pose_box")) else None
        # Embeddings carry their own flipped view (the student's output on the mirrored crop).
        self.carried_flip = self.options.flip_tta and self.options.features == "embedding"
        if self.options.method == "nns" and self.carried_flip and self.dtw_index_flipped is None:
            raise ConfigError("recognizer: this NNS index has no flipped embeddings; rebuild it with them "
                              "or set flip_tta = false")
        self._setup_spans(meta if self.options.method == "nns" else None)

    def process(self, batch: list[Frame]) -> None:
        for frame in batch:
            streams = self.history.setdefault(frame.stream_id, {})
            for tid in (frame.annotations.get("tracks") or {}):
                feat = self._frame_feature(frame.annotations, tid)
                hist = streams.get(tid)
                if feat is None:
                    if not hist:
                        continue
                    feat = next(reversed(hist.values()))  # missing pose: hold the last
                if hist is None:
                    hist = streams[tid] = OrderedDict()
                hist[frame.index] = np.asarray(feat, dtype=np.float32).reshape(-1)
                while len(hist) > self.options.history:
                    hist.popitem(last=False)
            self._label(frame.stream_id, frame.events)
            if self.span_dtw is not None:
                self._spans(frame)
            labels = {ev.track_id: ev.label for ev in frame.events if ev.labelled}
            if labels:
                frame.annotations["label"] = labels

    def _frame_feature(self, annotations: dict, tid: int) -> np.ndarray | None:
        """The frame's feature; for embeddings with flips, [embedding, flipped embedding]."""
        if self.carried_flip:
            emb = annotations.get("embedding", {}).get(tid)
            return None if emb is None else np.concatenate([emb.vector, emb.flipped])
        return feature_vector(annotations, self.options.features, tid)

    def end_stream(self, eos: EndOfStream) -> None:
        self._label(eos.stream_id, eos.events)
        if self.span_dtw is not None:
            tracks = self.spans.pop(eos.stream_id, {})
            self._flush_spans(eos.stream_id, list(tracks.items()), eos.events,
                              {tid: st.frames[-1] for tid, st in tracks.items() if st.frames})
        self.history.pop(eos.stream_id, None)
        self.labelled.pop(eos.stream_id, None)

    # -- spans ----------------------------------------------------------------------

    def _setup_spans(self, own_index_meta: dict | None) -> None:
        o = self.options
        self.span_dtw = None
        if not o.spans:
            return
        if own_index_meta is not None and not o.span_index:  # method "nns": the same index
            self.span_dtw, self.span_dtw_flipped = self.dtw_index, self.dtw_index_flipped
            self.span_labels, self.span_classes = self.index_labels, self.classes
            bound_meta = own_index_meta
        else:
            path = o.span_index or (DEFAULT_SPAN_INDEX if not o.weights else "")
            if not path:
                return  # a head of one's own: spans need an index on its features (span_index)
            source = load_nns_index(path)
            check_head_features("recognizer span_index", path, source.meta, o.features, None)
            if source.dim != self.dim:
                raise ConfigError(f"recognizer: span_index {path} holds {source.dim}-d features, the chain gives "
                                  f"{self.dim}-d; use an index built on these features")
            self.span_dtw, self.span_dtw_flipped = _dtw_indexes(source)
            self.span_labels, self.span_classes = source.labels, source.classes
            bound_meta = source.meta
        self.span_above = float(bound_meta.get("span_unknown_above", bound_meta.get("unknown_above", float("inf"))))
        # Load (or compile) numba's DTW now: the first span check mid-stream held the GIL for
        # seconds while it did, stalling every other stage.
        width = 2 * self.dim if self.carried_flip else self.dim
        self._classify_spans([np.zeros((2, width), dtype=np.float32)])

    def _followed(self, frame: Frame) -> list[int]:
        tracks = frame.annotations.get("tracks") or {}
        athletes = [tid for tid, t in tracks.items() if getattr(t, "is_athlete", False)]
        return sorted(athletes if (self.options.athletes_only and athletes) else tracks)

    def _spans(self, frame: Frame) -> None:
        """Span candidates of the tracks on this frame; close groups; flush vanished tracks."""
        o = self.options
        streams = self.spans.setdefault(frame.stream_id, {})
        hist = self.history.get(frame.stream_id, {})
        todo: list[tuple[int, _SpanTrack, int, int]] = []
        for tid in self._followed(frame):
            h = hist.get(tid)
            if not h or frame.index not in h:
                continue  # no feature on this track yet
            st = streams.setdefault(tid, _SpanTrack())
            st.frames.append(frame.index)
            st.pts.append(frame.pts)
            st.feats.append(h[frame.index])
            st.last_seen = frame.index
            if len(st.feats) > o.history:  # keep the window positions aligned with the kept features
                del st.frames[0], st.pts[0], st.feats[0]
                st.offset += 1
            n = st.offset + len(st.feats)
            todo += [(tid, st, s, e) for s, e in windows_ending(n, o.span_lengths, o.span_stride)]
        results = self._classify_spans([st.window(s, e) for _, st, s, e in todo])
        accepted: dict[int, list[tuple[int, int, int, float]]] = {}
        for (tid, st, s, e), (c, p, unk) in zip(todo, results):
            if not unk:
                accepted.setdefault(tid, []).append((c, s, e, p))
        evaluated = {tid for tid, *_ in todo}
        for tid in sorted(evaluated):
            st = streams[tid]
            self._emit_spans(frame.stream_id, tid, st, merge_candidates(st.groups, accepted.get(tid, [])),
                             frame.events, frame.index)
        gone = [(tid, st) for tid, st in streams.items() if frame.index - st.last_seen > o.max_gap]
        for tid, _ in gone:
            del streams[tid]
        self._flush_spans(frame.stream_id, gone, frame.events, {tid: frame.index for tid, _ in gone})

    def _flush_spans(self, stream_id: str, tracks: list[tuple[int, "_SpanTrack"]], out: list[Event],
                     emitted: dict[int, int]) -> None:
        """The tracks ended: classify each one's whole span, close and emit its groups."""
        tracks = sorted(tracks)
        whole = [(tid, st) for tid, st in tracks if len(st.feats) >= self.options.span_min_whole]
        results = self._classify_spans([np.stack(st.feats) for _, st in whole])
        cand = {tid: (None if unk else (c, st.offset, st.offset + len(st.feats), p))
                for (tid, st), (c, p, unk) in zip(whole, results)}
        for tid, st in tracks:
            self._emit_spans(stream_id, tid, st, close_all(st.groups, cand.get(tid)), out, emitted[tid])

    def _classify_spans(self, seqs: list[np.ndarray]) -> list[tuple[int, float, bool]]:
        """(class of span_index, vote share, unknown) per span: NNS-DTW with the strict span bound."""
        if not seqs:
            return []
        flipped = None
        if self.carried_flip:
            flipped = [q[:, self.dim:] for q in seqs]
            seqs = [q[:, :self.dim] for q in seqs]
        best, vote, cost = self._nearest(seqs, flipped, self.span_dtw, self.span_dtw_flipped, self.span_labels)
        unknown = (cost > self.span_above) | (vote < self.options.span_vote - 1e-9)
        return [(int(c), float(p), bool(u)) for c, p, u in zip(best, vote, unknown)]

    def _emit_spans(self, stream_id: str, tid: int, st: "_SpanTrack", groups: list[SpanGroup],
                    out: list[Event], emitted: int) -> None:
        done = self.labelled.get(stream_id, {}).get(tid, [])
        for g in groups:
            s, e = g.start - st.offset, g.end - st.offset
            if s < 0:
                continue  # its start left the kept history (a span longer than `history`)
            label = self.span_classes[g.label]
            a, b = st.frames[s], st.frames[e]
            if any(lab == label and a <= d_end and b >= d_start for lab, d_start, d_end in done):
                continue  # the detector's event on this track already says so
            ev = Event(stream_id=stream_id, track_id=tid, label="span", score=g.score, start_frame=a,
                       end_frame=b, start_pts=st.pts[s], end_pts=st.pts[e], emitted_frame=emitted,
                       extra={"source": "span"})
            ev.relabel(label, g.score)
            out.append(ev)

    def _label(self, stream_id: str, events: list[Event]) -> None:
        todo = [(ev, seq) for ev in events if ev.stream_id == stream_id and not ev.labelled
                for seq in [self._sequence(stream_id, ev)] if seq is not None]
        if not todo:
            return
        seqs = [seq for _, seq in todo]
        flipped = None
        if self.carried_flip:
            flipped = [s[:, self.dim:] for s in seqs]
            seqs = [s[:, :self.dim] for s in seqs]
        classify = self._classify_nns if self.options.method == "nns" else self._classify_bigru
        labels, scores, unknown = classify(seqs, flipped)
        for (ev, _), c, score, unk in zip(todo, labels, scores, unknown):
            wanted = ev.extra.get("detector_classes") if self.options.match_detector else None
            unk = bool(unk) or bool(wanted and self.classes[c] not in wanted)
            if unk:
                ev.extra["nearest_class"] = self.classes[c]  # what it would have said
            ev.relabel(UNKNOWN_LABEL if unk else self.classes[c], score)
            if not unk and ev.track_id is not None:
                self.labelled.setdefault(stream_id, {}).setdefault(ev.track_id, []).append(
                    (ev.label, ev.start_frame, ev.end_frame))

    def _classify_bigru(self, seqs: list[np.ndarray], flipped: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs = predict_proba(self.engines, seqs, self.flip, flipped=flipped)
        best = probs.argmax(1)
        # Probabilities were summed over the flip views: report a mean in [0, 1].
        views = 2 if (self.flip or flipped is not None) else 1
        score = probs[np.arange(len(best)), best] / views
        return best, score, score < self.unknown_below

    def _classify_nns(self, seqs: list[np.ndarray], flipped: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        best, vote, cost = self._nearest(seqs, flipped, self.dtw_index, self.dtw_index_flipped, self.index_labels)
        return best, vote, cost > self.unknown_above

    def _nearest(self, seqs: list[np.ndarray], flipped: list[np.ndarray] | None, dtw: Any, dtw_flipped: Any,
                 labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: the nearest index sequence's class, the share of the ``neighbours``
        nearest that agree with it, and the nearest DTW cost (every flip combination)."""
        from vpd_stream.heads.nns import exact_flip_min_costs, flip_min_costs

        if flipped is not None and dtw_flipped is not None:  # embeddings: their flip is no isometry
            costs = exact_flip_min_costs(seqs, flipped, dtw, dtw_flipped)
        else:
            costs = flip_min_costs(seqs, dtw, self.flip)
        k = min(self.options.neighbours, costs.shape[1])
        nearest = np.argsort(costs, axis=1, kind="stable")[:, :k]
        best = labels[nearest[:, 0]]
        return best, (labels[nearest] == best[:, None]).mean(1), costs[np.arange(len(best)), nearest[:, 0]]

    def _sequence(self, stream_id: str, ev: Event) -> np.ndarray | None:
        """The event's features frame by frame; gaps hold the last seen (or next) feature."""
        hist = self.history.get(stream_id, {}).get(ev.track_id)
        if not hist:
            return None
        seq, last = [], None
        for f in range(ev.start_frame, ev.end_frame + 1):
            last = hist.get(f, last)
            if last is not None:
                seq.append(last)
            elif seq == [] and f >= next(iter(hist)):
                continue
        if not seq:
            return None
        x = np.stack(seq)
        width = x.shape[1] // 2 if self.carried_flip else x.shape[1]
        if width != self.dim:
            raise ConfigError(f"recognizer: got {width}-d features, the head expects {self.dim}-d")
        return x

    def summary_lines(self) -> list[str]:
        """Which path the BiGRU head runs on, for the run summary."""
        return [self.path_note] if self.path_note else []

    def describe(self, frame: Frame) -> dict[str, Any]:
        labels = frame.annotations.get("label")
        return {"tracks": {tid: {"label": lab} for tid, lab in labels.items()}} if labels else {}


def _dtw_indexes(source: Any) -> tuple[Any, Any]:
    """An NNS index's sequences (and flipped ones, if any) normalized and packed once for the
    DTW search (the raw sequences are not kept). numba (about 100 MB) loads only here."""
    from vpd_stream.dtw import DtwIndex

    return DtwIndex(source.seqs), (DtwIndex(source.flipped) if source.flipped is not None else None)


class _SpanTrack:
    """One followed track's features for span recognition and its open candidate groups."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.pts: list[float] = []
        self.feats: list[np.ndarray] = []
        self.offset = 0  # positions dropped from the front (beyond `history`)
        self.last_seen = -1
        self.groups: list[SpanGroup] = []

    def window(self, start: int, end: int) -> np.ndarray:
        return np.stack(self.feats[start - self.offset:end - self.offset])
