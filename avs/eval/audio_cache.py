"""Remembered audio embeddings: a fixed audio encoder's output, computed once per second of audio.

Training shows the same clips every epoch, and evaluation runs the same seconds again (mirrored
frames, swapped audio, each validation pass); while the encoder's weights cannot change (frozen, or
nothing trains), its embedding of a second of audio is the same each time, and recomputing aisfx
costs about a quarter of a CPU training step. Inference on new videos does not use this.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


class AudioEmbeddingCache:
    """`cache(waveform)`: (B, N, 16000) -> (B, N, A) embeddings of `encoder`, keyed by each second's samples.

    Use it only while `encoder`'s weights are fixed. It runs the encoder without a graph and
    in whatever mode the caller left it (a frozen encoder stays in eval mode while the model trains).
    """

    def __init__(self, encoder: nn.Module, max_entries: int = 200_000):  # about 400 MB of 512-d embeddings
        self.encoder = encoder
        self.max_entries = max_entries
        self._seen: dict[bytes, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._seen)

    @torch.no_grad()
    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        seconds = waveform.flatten(0, 1)  # (B*N, 16000)
        keys = [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in seconds.float().cpu()]
        new = [i for i, key in enumerate(keys) if key not in self._seen]
        fresh = dict(zip(new, self.encoder(seconds[new]))) if new else {}
        if len(self._seen) + len(fresh) <= self.max_entries:  # when full, remember nothing more
            self._seen.update({keys[i]: row for i, row in fresh.items()})
        rows = [fresh[i] if i in fresh else self._seen[key] for i, key in enumerate(keys)]
        return torch.stack(rows).unflatten(0, waveform.shape[:2])
