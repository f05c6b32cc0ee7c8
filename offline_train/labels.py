"""Span labels over videos: one CSV format for every sport, checked on load.

Format (UTF-8 CSV, one header line, one span per line, any number of spans per video)::

    video,start_frame,end_frame,label        frames of the video as decoded, 0 = first, end inclusive
    video,start_s,end_s,label                seconds from the start (used when the frame columns are absent)
    video,label                              a trimmed clip: one span covering the whole clip

``video`` names a video by its file name or its stem (``skating_a01.mp4`` and
``skating_a01`` are the same video: a corpus store keys videos by stem). Other columns are
kept in ``Span.extra`` (e.g. ``split`` = train/test for a fixed split, ``view``). When both
frame and second columns are given, the frames are used.

Checks (``check_spans`` with the videos' frame counts): a known video, start <= end, the
span inside the video, no duplicate (same video, start, end, label). Every problem is a
``vpd_stream.errors.InputError`` naming the file and the line.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from vpd_stream.errors import InputError

REQUIRED_ANY = (("video", "start_frame", "end_frame", "label"), ("video", "start_s", "end_s", "label"),
                ("video", "label"))


@dataclass
class Span:
    video: str  # the video's stem
    start: int | None  # frame, inclusive; None = the clip's first frame (trimmed clip)
    end: int | None  # frame, inclusive; None = the clip's last frame (trimmed clip)
    label: str
    line: int  # line in the CSV file (1 = header)
    start_s: float | None = None
    end_s: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def trimmed(self) -> bool:
        return self.start is None and self.start_s is None


@dataclass
class LabelSet:
    path: Path
    spans: list[Span]
    columns: list[str]

    def videos(self) -> list[str]:
        """Video stems in order of first appearance."""
        return list(dict.fromkeys(s.video for s in self.spans))

    def classes(self) -> list[str]:
        return sorted({s.label for s in self.spans})

    def by_video(self) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for s in self.spans:
            out.setdefault(s.video, []).append(s)
        return out


def video_stem(name: str) -> str:
    """``dir/skating_a01.mp4`` -> ``skating_a01``; a plain stem stays as it is."""
    base = Path(name.strip()).name
    return Path(base).stem if Path(base).suffix else base


def _int(value: str, col: str, where: str) -> int:
    try:
        f = float(value)
    except ValueError:
        raise InputError(f"{where}: {col} '{value}' is not a number") from None
    if f != int(f):
        raise InputError(f"{where}: {col} '{value}' is not a whole frame number")
    return int(f)


def _float(value: str, col: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{where}: {col} '{value}' is not a number") from None


def load_labels(path: str | Path) -> LabelSet:
    """Parse a label CSV (format checks only; ``check_spans`` checks against the videos)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"label file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"label file {path} cannot be read ({exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise InputError(f"{path}: empty label file; expected a header 'video,start_frame,end_frame,label'")
    header = [h.strip() for h in rows[0]]
    cols = set(header)
    if len(cols) != len(header):
        raise InputError(f"{path}:1: a column name appears twice in the header")
    if not any(set(req) <= cols for req in REQUIRED_ANY):
        raise InputError(f"{path}:1: the header needs video,start_frame,end_frame,label "
                         f"(or video,start_s,end_s,label, or video,label for trimmed clips); got {','.join(header)}")
    has_frames = {"start_frame", "end_frame"} <= cols
    has_secs = {"start_s", "end_s"} <= cols
    spans: list[Span] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}:{lineno}"
        if len(row) != len(header):
            raise InputError(f"{where}: {len(row)} fields, the header has {len(header)}")
        rec = {h: c.strip() for h, c in zip(header, row)}
        video, label = rec["video"], rec["label"]
        if not video:
            raise InputError(f"{where}: empty video name")
        if not label:
            raise InputError(f"{where}: empty label")
        start = end = None
        start_s = end_s = None
        if has_frames and (rec["start_frame"] or rec["end_frame"]):
            start = _int(rec["start_frame"], "start_frame", where)
            end = _int(rec["end_frame"], "end_frame", where)
            if start < 0:
                raise InputError(f"{where}: start_frame {start} is negative")
            if end < start:
                raise InputError(f"{where}: end_frame {end} is before start_frame {start}")
        if has_secs and rec["start_s"] != "" and rec["end_s"] != "":
            start_s = _float(rec["start_s"], "start_s", where)
            end_s = _float(rec["end_s"], "end_s", where)
            if start is None:
                if start_s < 0:
                    raise InputError(f"{where}: start_s {start_s} is negative")
                if end_s < start_s:
                    raise InputError(f"{where}: end_s {end_s} is before start_s {start_s}")
        used = {"video", "label", "start_frame", "end_frame", "start_s", "end_s"}
        extra = {h: v for h, v in rec.items() if h not in used}
        spans.append(Span(video_stem(video), start, end, label, lineno, start_s, end_s, extra))
    if not spans:
        raise InputError(f"{path}: no spans after the header")
    seen: dict[tuple, int] = {}
    for s in spans:
        key = (s.video, s.start, s.end, s.start_s if s.start is None else None,
               s.end_s if s.start is None else None, s.label)
        if key in seen:
            raise InputError(f"{path}:{s.line}: duplicate of the span on line {seen[key]} ({s.video}, {s.label})")
        seen[key] = s.line
    return LabelSet(path, spans, header)


def resolve_spans(labels: LabelSet, num_frames: dict[str, int], fps: dict[str, float] | None = None) -> LabelSet:
    """Spans in frames of each video, checked: known videos, inside the video.

    ``num_frames``: frames per video stem (source frames); ``fps``: the source rate per video,
    needed for spans given in seconds (frame = round(seconds * fps)). Trimmed-clip labels
    become spans over the whole clip.
    """
    out = []
    for s in labels.spans:
        where = f"{labels.path}:{s.line}"
        if s.video not in num_frames:
            known = ", ".join(sorted(num_frames)[:5]) + (", ..." if len(num_frames) > 5 else "")
            raise InputError(f"{where}: unknown video '{s.video}' (not in the data; known: {known})")
        n = num_frames[s.video]
        start, end = s.start, s.end
        if start is None and s.start_s is not None:
            rate = (fps or {}).get(s.video)
            if not rate:
                raise InputError(f"{where}: span in seconds but the frame rate of '{s.video}' is unknown")
            start, end = int(round(s.start_s * rate)), int(round(s.end_s * rate))
        if start is None:
            start, end = 0, n - 1
        if end >= n:
            raise InputError(f"{where}: span {start}-{end} of '{s.video}' ends after its last frame ({n - 1})")
        out.append(Span(s.video, start, end, s.label, s.line, s.start_s, s.end_s, dict(s.extra)))
    return LabelSet(labels.path, out, labels.columns)


def write_labels(path: str | Path, spans: list[Span], extra_columns: tuple[str, ...] = ()) -> Path:
    """Write spans in the frame format (for adapters such as Penn Action)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video", "start_frame", "end_frame", "label", *extra_columns])
        for s in spans:
            w.writerow([s.video, "" if s.start is None else s.start, "" if s.end is None else s.end, s.label,
                        *[s.extra.get(c, "") for c in extra_columns]])
    return path
