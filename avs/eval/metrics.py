"""Segmentation metrics, accumulated over a whole dataset (METHOD.md, Metrics).

Never averaged per batch: each meter keeps sums, so a score does not depend on the batch size,
and `state()`/`merge()` reduce it across workers (add the states, e.g. with `all_reduce`).

`BinaryMeter`, the AVSBench protocol for binary subsets (S4, MS3, the embedded set):
  J: per-frame IoU of (p > 0.5) with the truth, averaged over frames; a frame with an empty
     truth scores the share of pixels correctly left empty.
  F: per frame, the F-measure (beta^2 = 0.3) at 255 thresholds evenly spaced over [0, 1)
     (AVSBench's linspace(0, 1 - 1e-10, 255), prediction >= threshold), frames with an empty
     truth skipped; averaged over frames per threshold, then the maximum over thresholds.
  compat=True instead averages per `update` call, as AVSBench's `utility.py` does per batch: J
     is the mean of the batches' frame means, F the mean of the batches' maxima, where a batch
     whose frames all have an empty truth scores F = 0 and is counted (`Eval_Fmeasure` returns
     its zero-initialised score). Use it only to compare with published numbers; the result
     then depends on the batch size.
`SemanticMeter`, the AVSS protocol: per-class IoU and F over the frames where the class is
  predicted or true, then the mean over the classes that occurred. all_classes=True is
  `avss/test.py`'s form: a class that never occurred scores 0 (its NaN set to 0) and the mean is
  over all classes; that code also scores the frames padded to 10 (pass them in).
`DatasetMeter`, the per-dataset protocol (CAVP/DDESeg/VPO papers): intersection and union summed
  over the whole set per class, averaged over classes including background; J&F = (J + F) / 2.
  A class absent from truth and prediction is left out (DDESeg's `compute_metrics_ddp`) or, with
  absent_as_zero=True, scores 0 and counts (CAVP's `MIoU`).
"""

from __future__ import annotations

import torch

BETA2 = 0.3
THRESHOLDS = torch.linspace(0, 1 - 1e-10, 255, dtype=torch.float64)


def frame_jaccard(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """J of each frame by the AVSBench rule: (N, P) bool prediction and truth -> (N,) float64.
    A frame with an empty truth scores the share of pixels left empty."""
    inter = (pred & truth).sum(1).double()
    union = (pred | truth).sum(1).double()
    return torch.where(truth.sum(1) == 0, (~pred).double().mean(1), inter / union.clamp(min=1))


class BinaryMeter:
    """Accumulates J and F over frames."""

    def __init__(self, compat: bool = False) -> None:
        self.compat = compat
        # J sum, frames, F frames, F sums per threshold, then the batch-wise sums:
        # batch J means, batches, batch F maxima, batches scored for F
        self.sums = torch.zeros(3 + len(THRESHOLDS) + 4, dtype=torch.float64)

    def update(self, probs: torch.Tensor, truth: torch.Tensor) -> None:
        """Args: probs (N, H, W) in [0, 1]; truth (N, H, W) bool, for N annotated frames."""
        if probs.numel() == 0:
            return
        probs, truth = probs.detach().double().flatten(1).cpu(), truth.flatten(1).cpu()
        pred = probs > 0.5
        jaccard = frame_jaccard(pred, truth)
        empty = truth.sum(1) == 0
        self.sums[0] += jaccard.sum()
        self.sums[1] += len(jaccard)
        self.sums[-4] += jaccard.mean()
        self.sums[-3] += 1
        self.sums[-1] += 1  # the batch's F is counted even when every truth is empty (it is then 0)

        if (~empty).any():
            p, t = probs[~empty], truth[~empty].double()
            order = p.argsort(dim=1)
            p_sorted, t_sorted = p.gather(1, order), t.gather(1, order)
            before = torch.cat([torch.zeros_like(t_sorted[:, :1]), t_sorted.cumsum(1)], 1)  # positives before index k
            first = torch.searchsorted(
                p_sorted, THRESHOLDS.expand(len(p), -1).contiguous(), side="left"
            )  # first p >= t
            predicted = p.shape[1] - first  # pixels with p >= t
            true_positive = before[:, -1:] - before.gather(1, first)
            precision = true_positive / (predicted + 1e-20)
            recall = true_positive / (before[:, -1:] + 1e-20)
            f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
            f = f.nan_to_num(0.0)
            self.sums[2] += len(p)
            self.sums[3:-4] += f.sum(0)
            self.sums[-2] += f.mean(0).max()

    def state(self) -> torch.Tensor:
        """The sums, to be added across workers (`torch.distributed.all_reduce`)."""
        return self.sums.clone()

    def merge(self, state: torch.Tensor) -> None:
        self.sums += state.to(self.sums)

    def compute(self) -> dict[str, float]:
        """{"J", "F", "frames"}; J or F is NaN when there was no frame to score."""
        frames, f_frames = self.sums[1].item(), self.sums[2].item()
        if self.compat:
            (j_sum, batches, f_sum, f_batches) = self.sums[-4:].tolist()
            return {"J": _ratio(j_sum, batches), "F": _ratio(f_sum, f_batches), "frames": int(frames)}
        return {
            "J": _ratio(self.sums[0].item(), frames),
            "F": (self.sums[3:-4] / f_frames).max().item() if f_frames else float("nan"),
            "frames": int(frames),
        }


class SemanticMeter:
    """AVSS protocol: per-class IoU and F (beta^2 = 0.3) of argmax predictions.

    For every class, IoU and F are averaged over the frames where the class is predicted or
    true; the scores are the means over classes that occurred at all (`all_classes=False`, pass
    annotated frames only) or over every class, one that never occurred scoring 0
    (`all_classes=True`, as `avss/test.py`; pass the padded frames too).
    """

    def __init__(self, num_classes: int, all_classes: bool = False) -> None:
        self.num_classes = num_classes
        self.all_classes = all_classes
        self.sums = torch.zeros(3, num_classes, dtype=torch.float64)  # IoU sums, F sums, frames

    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        """Args: pred, truth (N, H, W) integer class ids in [0, num_classes)."""
        if pred.numel() == 0:
            return
        confusion = _confusion(pred, truth, self.num_classes)  # (N, K, K): [frame, true, predicted]
        inter = confusion.diagonal(dim1=1, dim2=2)
        true_count, predicted_count = confusion.sum(2), confusion.sum(1)
        present = (true_count + predicted_count) > 0
        iou = inter / (true_count + predicted_count - inter).clamp(min=1)
        f = _f_measure(inter, predicted_count, true_count)
        self.sums[0] += (iou * present).sum(0)
        self.sums[1] += (f * present).sum(0)
        self.sums[2] += present.sum(0)

    def state(self) -> torch.Tensor:
        return self.sums.clone()

    def merge(self, state: torch.Tensor) -> None:
        self.sums += state.to(self.sums)

    def compute(self) -> dict[str, float]:
        """{"J": mIoU, "F": mean F, "classes": how many occurred}."""
        seen = self.sums[2] > 0
        if not seen.any():
            return {"J": float("nan"), "F": float("nan"), "classes": 0}
        if self.all_classes:
            per_class = torch.where(seen, self.sums[:2] / self.sums[2].clamp(min=1), 0.0)
        else:
            per_class = self.sums[:2, seen] / self.sums[2, seen]
        return {"J": per_class[0].mean().item(), "F": per_class[1].mean().item(), "classes": int(seen.sum())}


class DatasetMeter:
    """Per-dataset protocol: one confusion matrix over the whole set (binary: K = 2, p > 0.5)."""

    def __init__(self, num_classes: int = 2, absent_as_zero: bool = False) -> None:
        self.num_classes = num_classes
        self.absent_as_zero = absent_as_zero
        self.sums = torch.zeros(num_classes, num_classes, dtype=torch.float64)  # [true, predicted]

    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        """Args: pred, truth (N, H, W) integer class ids (binary: 0/1)."""
        if pred.numel():
            self.sums += _confusion(pred, truth, self.num_classes).sum(0)

    def state(self) -> torch.Tensor:
        return self.sums.clone()

    def merge(self, state: torch.Tensor) -> None:
        self.sums += state.to(self.sums)

    def compute(self) -> dict[str, float]:
        """{"J", "F", "J&F"}: means over the classes that occur in the truth or the predictions
        (or over all classes with `absent_as_zero`)."""
        inter = self.sums.diagonal()
        true_count, predicted_count = self.sums.sum(1), self.sums.sum(0)
        seen = (true_count + predicted_count) > 0
        if not seen.any():
            return {"J": float("nan"), "F": float("nan"), "J&F": float("nan")}
        if self.absent_as_zero:
            seen = torch.ones_like(seen)  # an absent class has J = F = 0 below
        j = (inter / (true_count + predicted_count - inter).clamp(min=1))[seen].mean().item()
        f = _f_measure(inter, predicted_count, true_count)[seen].mean().item()
        return {"J": j, "F": f, "J&F": (j + f) / 2}


def _confusion(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, K, K) per-frame confusion counts, [frame, true class, predicted class], float64."""
    n = pred.shape[0]
    pred, truth = pred.reshape(n, -1).long().cpu(), truth.reshape(n, -1).long().cpu()
    if pred.numel() and (max(pred.max(), truth.max()) >= num_classes or min(pred.min(), truth.min()) < 0):
        raise ValueError(
            f"class ids must lie in [0, {num_classes}); got [{min(pred.min(), truth.min())}, "
            f"{max(pred.max(), truth.max())}]"
        )
    index = (torch.arange(n).unsqueeze(1) * num_classes + truth) * num_classes + pred
    return torch.bincount(index.flatten(), minlength=n * num_classes**2).view(n, num_classes, num_classes).double()


def _f_measure(tp: torch.Tensor, predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    precision, recall = tp / predicted.clamp(min=1), tp / true.clamp(min=1)
    return ((1 + BETA2) * precision * recall / (BETA2 * precision + recall)).nan_to_num(0.0)


def _ratio(total: float, count: float) -> float:
    return total / count if count else float("nan")
