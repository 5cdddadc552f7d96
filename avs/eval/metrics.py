"""AVSBench-protocol J and F for binary masks, accumulated over a whole dataset (METHOD.md, Metrics).

Never averaged per batch: the meter keeps sums, so the score does not depend on the batch size,
and `state()`/`merge()` reduce it across workers.
  J: per-frame IoU of (p > 0.5) with the truth, averaged over frames; a frame with an empty
     truth scores the share of pixels correctly left empty.
  F: per frame, the F-measure (beta^2 = 0.3) at 255 thresholds evenly spaced over [0, 1)
     (AVSBench's linspace(0, 1 - 1e-10, 255), prediction >= threshold), frames with an empty
     truth skipped; averaged over frames per threshold, then the maximum over thresholds.
"""

from __future__ import annotations

import torch

BETA2 = 0.3
THRESHOLDS = torch.linspace(0, 1 - 1e-10, 255, dtype=torch.float64)


class BinaryMeter:
    """Accumulates J and F over frames."""

    def __init__(self) -> None:
        self.sums = torch.zeros(3 + len(THRESHOLDS), dtype=torch.float64)  # J sum, frames, F frames, F sums

    def update(self, probs: torch.Tensor, truth: torch.Tensor) -> None:
        """Args: probs (N, H, W) in [0, 1]; truth (N, H, W) bool, for N annotated frames."""
        if probs.numel() == 0:
            return
        probs, truth = probs.detach().double().flatten(1).cpu(), truth.flatten(1).cpu()
        pred = probs > 0.5
        inter = (pred & truth).sum(1).double()
        union = (pred | truth).sum(1).double()
        empty = truth.sum(1) == 0
        jaccard = torch.where(empty, (~pred).double().mean(1), inter / union.clamp(min=1))
        self.sums[0] += jaccard.sum()
        self.sums[1] += len(jaccard)

        if (~empty).any():
            p, t = probs[~empty], truth[~empty].double()
            order = p.argsort(dim=1)
            p_sorted, t_sorted = p.gather(1, order), t.gather(1, order)
            before = torch.cat([torch.zeros_like(t_sorted[:, :1]), t_sorted.cumsum(1)], 1)  # positives before index k
            first = torch.searchsorted(p_sorted, THRESHOLDS.expand(len(p), -1).contiguous(), side="left")  # first p >= t
            predicted = p.shape[1] - first  # pixels with p >= t
            true_positive = before[:, -1:] - before.gather(1, first)
            precision = true_positive / (predicted + 1e-20)
            recall = true_positive / (before[:, -1:] + 1e-20)
            f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
            self.sums[2] += len(p)
            self.sums[3:] += f.nan_to_num(0.0).sum(0)

    def state(self) -> torch.Tensor:
        """The sums, to be added across workers (`torch.distributed.all_reduce`)."""
        return self.sums.clone()

    def merge(self, state: torch.Tensor) -> None:
        self.sums += state.to(self.sums)

    def compute(self) -> dict[str, float]:
        """{"J", "F", "frames"}; J or F is NaN when there was no frame to score."""
        frames, f_frames = self.sums[1].item(), self.sums[2].item()
        return {
            "J": self.sums[0].item() / frames if frames else float("nan"),
            "F": (self.sums[3:] / f_frames).max().item() if f_frames else float("nan"),
            "frames": int(frames),
        }
