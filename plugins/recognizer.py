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
from vpd_stream.models.nns_index import index_meta, load_nns_index
from vpd_stream.plugin import Plugin, PluginContext
from vpd_stream.skeleton import flip_features

from .detector import check_head_features, head_features_or_pose

DEFAULT_RECOGNIZER = Path(__file__).resolve().parent / "weights" / "penn_recognizer"
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
    description = "labels each detected interval with a fine-grained class (BiGRU head or NNS-DTW)"
    batch_size = 8

    @dataclass
    class Options:
        method: str = "bigru"  # "bigru" (the weights below) or "nns" (DTW against `index`)
        weights: str = ""  # default plugins/weights/penn_recognizer (15 Penn Action classes)
        index: str = ""  # NNS index for method = "nns" (`vpd-stream train nns-index --out PATH`)
        neighbours: int = 5  # nns: the label score is the share of this many nearest that agree
        features: str = ""  # "pose" or "embedding"; "" = what the head (or index) was trained on
        unknown: bool = True  # say UNKNOWN_LABEL outside what training saw (the head's calibrated bound)
        history: int = 1500  # frames of features kept per track
        flip_tta: bool = True  # also use the flipped view (pose: mirrored joints; embedding: its flipped embedding)

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
        self.requires = (Key.TRACKS, FEATURE_SOURCES[self.options.features], Key.EVENTS)
        self.history: dict[str, dict[int, OrderedDict[int, np.ndarray]]] = {}
        self.path_note = ""

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        if self.options.method == "nns":
            from vpd_stream.dtw import DtwIndex  # numba (about 50 MB): only for this method

            source = load_nns_index(self.options.index)
            meta, self.index_labels = source.meta, source.labels
            self.classes, self.dim = source.classes, source.dim
            # Normalized and packed once, searched for every event (the raw sequences are not kept).
            self.dtw_index = DtwIndex(source.seqs)
            self.dtw_index_flipped = DtwIndex(source.flipped) if source.flipped is not None else None
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
        self.history.pop(eos.stream_id, None)

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
            if unk:
                ev.extra["nearest_class"] = self.classes[c]  # what it would have said
            ev.relabel(UNKNOWN_LABEL if unk else self.classes[c], score)

    def _classify_bigru(self, seqs: list[np.ndarray], flipped: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs = predict_proba(self.engines, seqs, self.flip, flipped=flipped)
        best = probs.argmax(1)
        # Probabilities were summed over the flip views: report a mean in [0, 1].
        views = 2 if (self.flip or flipped is not None) else 1
        score = probs[np.arange(len(best)), best] / views
        return best, score, score < self.unknown_below

    def _classify_nns(self, seqs: list[np.ndarray], flipped: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from vpd_stream.heads.nns import exact_flip_min_costs, flip_min_costs

        if flipped is not None:  # embeddings: their flip is no isometry, so all four combinations
            costs = exact_flip_min_costs(seqs, flipped, self.dtw_index, self.dtw_index_flipped)
        else:
            costs = flip_min_costs(seqs, self.dtw_index, self.flip)
        k = min(self.options.neighbours, costs.shape[1])
        nearest = np.argsort(costs, axis=1, kind="stable")[:, :k]
        best = self.index_labels[nearest[:, 0]]
        unknown = costs[np.arange(len(best)), nearest[:, 0]] > self.unknown_above
        return best, (self.index_labels[nearest] == best[:, None]).mean(1), unknown

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
