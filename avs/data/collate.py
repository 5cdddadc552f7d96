"""Ray Data's side of `ClipBatch`: the collate function for `iter_torch_batches`.

Kept apart from `avs.data.stream` so that decoding imports without Ray (the GPU
benchmark runs them on machines that have torch but no Ray).
"""

from __future__ import annotations

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from avs.data.batch import ClipBatch


class CollateClips(NumpyBatchCollateFn):
    """`iter_torch_batches(collate_fn=CollateClips())`: numpy columns to a `ClipBatch`."""

    def __call__(self, batch: dict[str, np.ndarray]) -> ClipBatch:
        return ClipBatch.from_numpy(batch)
