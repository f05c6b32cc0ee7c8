"""Tracker + pose of whichever code tree PYTHONPATH points at, on the same clips: to compare
this version with an older commit in one sitting (issue 13), e.g.

    git worktree add /tmp/base 176d0dc
    PYTHONPATH=/tmp/base .venv/bin/python offline_train/benchmarks/athletes_compare.py tennis_broadcast_rally.mp4,golf_swing_golfdb.mp4
    PYTHONPATH=. .venv/bin/python offline_train/benchmarks/athletes_compare.py tennis_broadcast_rally.mp4,golf_swing_golfdb.mp4

Only what every version has is used (decode, TrackerPlugin, PosePlugin); boxes are scored
against tests/data/tennis_broadcast_rally_boxes.json.
"""

import json
import os
import pathlib
import statistics
import sys
import time


def main() -> None:
    import plugins.tracker as T
    from offline_train.benchmarks.perception import decode
    from plugins.pose import PosePlugin
    from plugins.tracker import TrackerPlugin

    print("code:", pathlib.Path(T.__file__).parent.parent, "load", os.getloadavg()[0])
    clips = sys.argv[1].split(",")
    gt = {
        f["source_frame"]: list(f["players"].values())
        for f in json.load(
            open(pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "tennis_broadcast_rally_boxes.json")
        )["frames"]
    }

    def iou(a, b):
        ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        i = ix * iy
        return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)

    for clip in clips:
        k = 2 if clip.startswith("tennis_broadcast") else 1
        tr = TrackerPlugin(TrackerPlugin.Options(max_athletes=k))
        po = PosePlugin()
        tr.setup(tr.context)
        po.setup(po.context)
        n = tracked = conf = 0
        ts = []
        hits = ngt = npred = 0
        ids = set()
        for fr in decode(
            pathlib.Path(
                os.environ.get("VPD_DATA_DIR", pathlib.Path(__file__).resolve().parents[3] / "shared" / "data")
            )
            / "videos"
            / clip
        ):
            t0 = time.perf_counter()
            tr.process([fr])
            po.process([fr])
            ts.append(time.perf_counter() - t0)
            tracks = fr.annotations["tracks"]
            ath = [t for t, x in tracks.items() if x.is_athlete]
            ids |= set(ath)
            n += 1
            tracked += bool(ath)
            conf += (
                sum(1 for t in ath if t in fr.annotations["pose"] and fr.annotations["pose"][t].mean_score >= 0.5) >= k
            )
            src = round(fr.pts * 30)
            if k == 2 and src in gt:
                g = gt[src]
                p = [tracks[t].box.tolist() for t in ath]
                ngt += len(g)
                npred += len(p)
                used = set()
                for gb in g:
                    best = max(((iou(gb, pb), j) for j, pb in enumerate(p) if j not in used), default=(0, None))
                    if best[0] >= 0.5:
                        hits += 1
                        used.add(best[1])
        print(
            f"{clip}: frames {n}, with athlete {tracked / n:.0%}, all {k} athletes pose>=0.5 {conf / n:.0%}, ids {sorted(ids)}, "
            f"tracker+pose {1000 * statistics.mean(ts):.1f} ms/frame"
            + (f", recall {hits / max(1, ngt):.3f} precision {hits / max(1, npred):.3f}" if k == 2 else "")
            + f", load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
