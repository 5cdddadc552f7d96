"""Does the model pick the sounding object? Scored where a silent object is in view too.

In a frame with both a sounding and a silent visible object (the stamps set marks every visible
object in `visible_masks`), a model that listens puts more foreground probability on the sounding
object's pixels than on the silent ones'. `pick_rate` is the share of such frames where it does:
0.5 is what a model gets that segments every object alike (or, on the `hard` pairs, whatever the
frames alone tell it). J can hide this: segmenting every visible object scores well when most of
them sound.

The same frames also give J where it takes listening to score: `mixed_J`, the model's J in them,
against `mixed_union_J`, the J of every visible object drawn perfectly (which scores only the
sounding share of what it draws). A model scores above that reference there only by leaving the
silent object out; `silent_covered` and `sounding_covered` say how much of each region it marks
as foreground.
"""

from __future__ import annotations

import torch

from avs.eval.metrics import frame_jaccard

MIN_PIXELS = 20  # both regions must be this large for a frame to count


def both_in_view(sounding: torch.Tensor, silent: torch.Tensor) -> bool:
    """Whether a frame counts: its sounding and its silent region (bool masks) both have MIN_PIXELS."""
    return bool(sounding.sum() >= MIN_PIXELS and silent.sum() >= MIN_PIXELS)


class SoundingPickMeter:
    """Accumulates, per frame with both regions, whether p(sounding pixels) > p(silent pixels),
    and the frame's J, its visible union's J and the share of each region marked (p > 0.5)."""

    def __init__(self) -> None:
        self.frames = 0
        self.picks = 0
        self.sum_sounding = 0.0
        self.sum_silent = 0.0
        self.sum_j = 0.0
        self.sum_union_j = 0.0
        self.sum_sounding_covered = 0.0
        self.sum_silent_covered = 0.0

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
            marked = p > 0.5
            self.sum_j += frame_jaccard(marked.flatten()[None], on.flatten()[None]).item()
            self.sum_union_j += frame_jaccard((on | off).flatten()[None], on.flatten()[None]).item()
            self.sum_sounding_covered += marked[on].float().mean().item()
            self.sum_silent_covered += marked[off].float().mean().item()

    def compute(self) -> dict[str, float]:
        """pick_rate, mean p on sounding / silent pixels, mixed_J, mixed_union_J, sounding_covered,
        silent_covered (each a mean over the frames; NaN when no frame qualified), frames."""
        sums = {
            "pick_rate": self.picks,
            "p_sounding": self.sum_sounding,
            "p_silent": self.sum_silent,
            "mixed_J": self.sum_j,
            "mixed_union_J": self.sum_union_j,
            "sounding_covered": self.sum_sounding_covered,
            "silent_covered": self.sum_silent_covered,
        }
        means = {k: float(v) / self.frames if self.frames else float("nan") for k, v in sums.items()}
        return {**means, "frames": self.frames}
