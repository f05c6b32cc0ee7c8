"""``python -m offline_train.sport_commands train|eval|poses ...``: the generic (issue 14) commands
outside ``vpd-stream`` — notably ``poses penn-action``, the Penn Action keypoint-clip export.
The commands themselves live in ``offline_train/commands/sport.py``."""
from __future__ import annotations

from .commands.sport import main

if __name__ == "__main__":
    main()
