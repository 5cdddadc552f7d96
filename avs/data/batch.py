"""`ClipBatch`: the batch of clips that training, validation, evaluation and the benchmarks consume.

Its own module so that every consumer imports it without the Ray Data input (`avs.data.stream`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ClipBatch:
    """A batch of clips, ready for the model (see `RAVS.forward` and `compute_losses`)."""

    frames: torch.Tensor  # (B, T, 3, H, W) uint8
    audio: torch.Tensor  # (B, T, 16000) float32 waveform: each frame's second of 16 kHz audio
    masks: torch.Tensor  # (B, T, H, W) uint8 class ids (binary: 0/1)
    labelled: torch.Tensor  # (B, T) bool: the frame has a ground-truth mask
    sounding: torch.Tensor  # (B, T) bool: something sounds in the frame's second
    visible: torch.Tensor  # (B, T, H, W) uint8: every visible object (zeros when the source lacks it or it was not read)
    has_visible: torch.Tensor  # (B,) bool
    subset: list[str]  # (B,) e.g. s4 / ms3 / hard
    clip_id: list[str]  # (B,)
    padded: torch.Tensor | None = None  # (B, T) bool: a blank frame added to fill the batch's T

    @classmethod
    def from_numpy(cls, batch: dict[str, np.ndarray]) -> ClipBatch:
        """Numpy columns (as `DecodeClips` writes them) to typed tensors that own writable memory."""
        return cls(
            frames=_writable_tensor(batch["frames"]),
            audio=_writable_tensor(batch["audio"]),
            masks=_writable_tensor(batch["masks"]),
            labelled=_writable_tensor(batch["labelled"]),
            sounding=_writable_tensor(batch["sounding"]),
            visible=_writable_tensor(batch["visible"]),
            has_visible=_writable_tensor(batch["has_visible"]),
            subset=[str(s) for s in batch["subset"]],
            clip_id=[str(c) for c in batch["clip_id"]],
            padded=_writable_tensor(batch["padded"]) if "padded" in batch else None,
        )

    def to(self, device: torch.device) -> ClipBatch:
        tensors = {k: getattr(self, k).to(device, non_blocking=True) for k in ("frames", "audio", "masks", "labelled", "sounding", "visible", "has_visible")}
        padded = None if self.padded is None else self.padded.to(device, non_blocking=True)
        return ClipBatch(**tensors, subset=self.subset, clip_id=self.clip_id, padded=padded)

    def model_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames as floats in [0, 1], audio waveform)."""
        return self.frames.float() / 255, self.audio


def _writable_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over `array`, or over a copy of it when it is read-only.

    Ray Data hands `iter_torch_batches` zero-copy views of its object store, which are read-only:
    a tensor over one would make any in-place change (a user's own loss or augmentation) undefined
    behaviour. The copy costs about 2 MB per training batch.
    """
    return torch.from_numpy(array if array.flags.writeable else array.copy())
