"""NNS-DTW over offline feature sets; the flip search itself lives in vpd_stream.heads.nns."""
from __future__ import annotations

import numpy as np

from vpd_stream.heads.nns import exact_flip_min_costs, flip_min_costs


def feature_set_costs(fs, queries: list, index: list) -> np.ndarray:
    """(Q, N) NNS-DTW costs of ``queries`` against ``index`` clips with a
    ``offline_train.features.FeatureSet``, with the exact flip protocol for its kind."""
    q = [fs.extract(c) for c in queries]
    x = [fs.extract(c) for c in index]
    if fs.extract_flipped is None:
        return flip_min_costs(q, x, fs.flip)
    return exact_flip_min_costs(q, [fs.extract_flipped(c) for c in queries], x,
                                [fs.extract_flipped(c) for c in index])
