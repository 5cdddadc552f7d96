"""Ray Data's side of `ClipBatch`: the collate function for `iter_torch_batches`.

Kept apart from `avs.data.stream` so that decoding imports without Ray (the GPU
benchmark runs them on machines that have torch but no Ray).
"""

from __future__ import annotations

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from avs.data.batch import ClipBatch


def iter_clip_batches(dataset, *, batch_size: int, shuffle_buffer: int = 0, seed: int | None = None):
    """`ClipBatch`es of a Ray Dataset (or a Train worker's shard of one), prefetching two batches;
    with `shuffle_buffer`, each drawn at random from that many decoded clips (seeded by `seed`)."""
    return dataset.iter_torch_batches(
        batch_size=batch_size,
        collate_fn=CollateClips(),
        prefetch_batches=2,
        local_shuffle_buffer_size=shuffle_buffer or None,
        local_shuffle_seed=seed if shuffle_buffer else None,
    )


class CollateClips(NumpyBatchCollateFn):
    """`iter_torch_batches(collate_fn=CollateClips())`: numpy columns to a `ClipBatch`."""

    def __call__(self, batch: dict[str, np.ndarray]) -> ClipBatch:
        return ClipBatch.from_numpy(batch)
