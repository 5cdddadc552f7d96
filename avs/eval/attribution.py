"""Does the model pick the sounding object? Scored where a silent object is in view too.

In a frame with both a sounding and a silent visible object (the stamps set marks every visible
object in `visible_masks`), a model that listens puts more foreground probability on the sounding
object's pixels than on the silent ones'. `pick_rate` is the share of such frames where it does:
0.5 is what a model gets that segments every object alike (or, on the `hard` pairs, whatever the
frames alone tell it). J can hide this: segmenting every visible object scores well when most of
them sound.
"""

from __future__ import annotations

import torch

MIN_PIXELS = 20  # both regions must be this large for a frame to count


def both_in_view(sounding: torch.Tensor, silent: torch.Tensor) -> bool:
    """Whether a frame counts: its sounding and its silent region (bool masks) both have MIN_PIXELS."""
    return bool(sounding.sum() >= MIN_PIXELS and silent.sum() >= MIN_PIXELS)


class SoundingPickMeter:
    """Accumulates, per frame with both regions, whether p(sounding pixels) > p(silent pixels)."""

    def __init__(self) -> None:
        self.frames = 0
        self.picks = 0
        self.sum_sounding = 0.0
        self.sum_silent = 0.0

    def update(self, probs: torch.Tensor, sounding: torch.Tensor, visible: torch.Tensor) -> None:
        """probs (T, H, W) foreground probabilities; sounding, visible (T, H, W) bool masks of one clip."""
        silent = visible & ~sounding
        for p, on, off in zip(probs, sounding, silent):
            if not both_in_view(on, off):
                continue
            p_on, p_off = p[on].mean().item(), p[off].mean().item()
            self.frames += 1
            self.picks += p_on > p_off
            self.sum_sounding += p_on
            self.sum_silent += p_off

    def compute(self) -> dict[str, float]:
        """pick_rate, mean p on sounding / silent pixels (NaN when no frame qualified), frames."""
        if self.frames == 0:
            return {"pick_rate": float("nan"), "p_sounding": float("nan"), "p_silent": float("nan"), "frames": 0}
        return {"pick_rate": self.picks / self.frames, "p_sounding": self.sum_sounding / self.frames,
                "p_silent": self.sum_silent / self.frames, "frames": self.frames}
