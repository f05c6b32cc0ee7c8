"""Benchmark: the online detector plugin vs the offline single pass (issue 5).

    python -m offline_train.benchmarks.detector_online [--data ../shared/data] [--cache /tmp/detector_online]
        [--configs 250/25/74/taper 250/25/-1/mean ...]

On the 40 concatenated Penn Action test sequences (seed 0, the detection benchmark's), with
the default swing detector: AP at tIoU 0.3-0.7 of the online activations and of one offline
pass over each whole sequence, the mean |online - offline| activation, and event latency
(frames from the matched true interval's end to the frame the event is emitted on), for each
configuration WINDOW/STRIDE/LOOKAHEAD/WEIGHTING (lookahead -1 = window - 1).

The activations of every window on a grid fine enough for all configured strides of a window
are computed once (cached as .npz under --cache, keyed by the weights' hash); each
configuration is then combined by the plugin's own ``combine_windows``, the batch reference
its streaming activations equal bit for bit (tests/test_detector_plugin.py). Emission frames
follow the plugin's rule, which that test checks event by event: a run closes when the frame
after it is final (``final_after``), and the event is emitted then or when its stretched end
arrives, whichever is later.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import torch

from vpd_stream.data_dir import data_root

DEFAULT_CONFIGS = ("100/25/-1/mean", "100/25/-1/taper", "250/25/-1/mean", "250/25/-1/taper",
                   "250/25/124/taper", "250/25/99/taper", "250/25/74/taper", "250/25/74/mean",
                   "250/25/49/taper", "250/25/24/taper", "150/25/74/taper")


def parse_config(text: str) -> tuple[int, int, int, str]:
    w, s, la, weighting = text.split("/")
    return int(w), int(s), int(la), weighting


def window_cache(seqs, engine, window: int, base: int, cache: Path, key: str) -> list[dict]:
    """Activations of window_spans(n, window, base) and the tail window of every sequence."""
    from plugins.detector import run_windows
    from vpd_stream.heads.windows import window_spans

    path = cache / f"windows_{key}_w{window}_b{base}.npz"
    if path.is_file():
        z = np.load(path)
        return [{"spans": z[f"spans{i}"], "acts": list(z[f"acts{i}"]) if len(z[f"acts{i}"]) else [],
                 "head": [z[f"head{i}_{j}"] for j in range(int(z[f"nhead{i}"]))], "tail": z[f"tail{i}"]}
                for i in range(len(seqs))]
    t = time.perf_counter()
    out, arrays = [], {}
    for i, q in enumerate(seqs):
        n = len(q.features)
        spans = window_spans(n, window, base)
        head = [(s, e) for s, e in spans if e - s < window]
        full = [(s, e) for s, e in spans if e - s == window]
        head_acts = run_windows(engine, [q.features[s:e] for s, e in head])
        full_acts = run_windows(engine, [q.features[s:e] for s, e in full])
        tail = run_windows(engine, [q.features[max(0, n - window):]])[0]
        out.append({"spans": np.array(spans), "acts": full_acts, "head": head_acts, "tail": tail})
        arrays.update({f"spans{i}": np.array(spans), f"acts{i}": np.array(full_acts, dtype=np.float32).reshape(-1, window),
                       f"nhead{i}": np.array(len(head)), f"tail{i}": tail})
        arrays.update({f"head{i}_{j}": a for j, a in enumerate(head_acts)})
        print(f"  window {window} grid {base}: sequence {i + 1}/{len(seqs)} ({time.perf_counter() - t:.0f} s)", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return out


def online_activations(n: int, cached: dict, window: int, stride: int, lookahead: int, weighting: str) -> np.ndarray:
    """The plugin's activations for one configuration, from the cached grid windows."""
    from vpd_stream.heads.windows import combine_windows, tail_span, window_spans

    acts_by_end = {}
    all_acts = list(cached["head"]) + list(cached["acts"])
    for (s, e), a in zip(cached["spans"], all_acts):
        acts_by_end[int(e)] = a
    spans = window_spans(n, window, stride)
    acts = [acts_by_end[e] for _, e in spans]
    tail = cached["tail"] if tail_span(n, window, stride) else None
    return combine_windows(n, acts, tail, window, stride, lookahead, weighting)


def emitted_latencies(act: np.ndarray, gts: list[tuple[int, int]], mean_len: float, threshold: float,
                      window: int, stride: int, lookahead: int, min_len: int = 3) -> list[int]:
    """Frames from the matched true interval's end to the event's emission, per matched event."""
    from vpd_stream.heads.intervals import runs_above, shape_interval
    from vpd_stream.heads.windows import final_after

    n = len(act)
    look = window - 1 if lookahead < 0 else min(lookahead, window - 1)
    need = final_after(n, window, stride, look)
    out = []
    for s, e in runs_above(act, threshold):
        if e - s + 1 < min_len:
            continue
        close = n - 1 if e == n - 1 or need[e + 1] > n else int(need[e + 1]) - 1
        ns, ne = shape_interval(s, e, mean_len)
        emitted, ne = min(n - 1, max(close, ne)), min(ne, n - 1)
        ends = [g[1] for g in gts if g[0] <= ne and g[1] >= ns]
        if ends:
            out.append(emitted - max(ends))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(data_root()), help="data folder (default $VPD_DATA_DIR or ../shared/data)")
    ap.add_argument("--cache", default="/tmp/detector_online")
    ap.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    ap.add_argument("--check", type=int, default=1, help="sequences on which to check the cached combination "
                    "against the plugin's batch reference run directly (0 = skip)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from offline_train.action_detection import SWING_CLASSES, activations, ap_table, concat_sequences
    from vpd_stream.heads.intervals import proposals
    from offline_train.features import get_feature_set
    from offline_train.penn_action import load_penn_action
    from plugins.detector import DEFAULT_DETECTOR, DetectorPlugin, ensemble_engine, sliding_window_activations
    from vpd_stream.models.head_io import load_heads

    configs = [parse_config(c) for c in args.configs]
    bundle = load_heads(DEFAULT_DETECTOR, kind="detector")
    mean_len = float(bundle.meta["mean_action_length"])
    threshold = float(bundle.meta.get("threshold", 0.2))
    engine = ensemble_engine(bundle.models)
    key = hashlib.sha256(DEFAULT_DETECTOR.with_suffix(".safetensors").read_bytes()).hexdigest()[:12]
    cache = Path(args.cache)

    fs = get_feature_set("pose2d")
    test = [c for c in load_penn_action(Path(args.data) / "penn_action") if not c.train]
    seqs = concat_sequences([fs.extract(c) for c in test], [c.action in SWING_CLASSES for c in test],
                            [c.clip_id for c in test], 40, seed=0)
    gts = [q.intervals for q in seqs]
    off_path = cache / f"offline_{key}.npz"
    if off_path.is_file():
        offline = [np.load(off_path)[f"a{i}"] for i in range(len(seqs))]
    else:
        offline = [activations(bundle.models, q.features) for q in seqs]
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(off_path, **{f"a{i}": a for i, a in enumerate(offline)})
    off_ap = ap_table([proposals(a, mean_len, threshold) for a in offline], gts)

    grids = {}
    for w, s, _, _ in configs:
        grids[w] = math.gcd(grids.get(w, s), s)
    cached = {w: window_cache(seqs, engine, w, base, cache, key) for w, base in grids.items()}

    default = DetectorPlugin.Options()
    checked = [c for c in configs if c == (default.window, default.stride, default.lookahead, default.weighting)]
    for w, s, la, weighting in (checked or configs)[:1] if args.check else []:
        for i in range(args.check):
            want = sliding_window_activations(engine, seqs[i].features, w, s, la, weighting)
            got = online_activations(len(seqs[i].features), cached[w][i], w, s, la, weighting)
            assert np.allclose(got, want, rtol=0, atol=1e-6), "cached windows disagree with the plugin's reference"

    fmt = " / ".join
    print(f"offline single pass: AP {fmt(f'{100 * v:.1f}' for v in off_ap.values())}")
    print("\n| window / stride / look-ahead / weighting | online AP % (tIoU 0.3 / 0.4 / 0.5 / 0.6 / 0.7) "
          "| online - offline (points) | mean abs. activation diff. | event latency p50 / p95 (frames) |")
    print("|---|---|---|---|---|")
    for w, s, la, weighting in configs:
        preds, lats, diffs = [], [], []
        for q, c, off in zip(seqs, cached[w], offline):
            act = online_activations(len(q.features), c, w, s, la, weighting)
            preds.append(proposals(act, mean_len, threshold))
            lats += emitted_latencies(act, q.intervals, mean_len, threshold, w, s, la)
            diffs.append(np.abs(act - off))
        on = ap_table(preds, gts)
        d = [100 * (on[t] - off_ap[t]) for t in on]
        p50, p95 = np.percentile(lats, [50, 95])
        look = w - 1 if la < 0 else min(la, w - 1)
        print(f"| {w} / {s} / {look} / {weighting} | {fmt(f'{100 * v:.1f}' for v in on.values())} "
              f"| {' '.join(f'{x:+.1f}' for x in d)} (max {max(map(abs, d)):.1f}) "
              f"| {np.concatenate(diffs).mean():.4f} | {p50:.0f} / {p95:.0f} |", flush=True)


if __name__ == "__main__":
    main()
