"""Calibration of per-pixel probabilities and of the uncertainty map (METHOD.md, Metrics).

`CalibrationMeter` keeps only histograms and sums, so it accumulates over a whole test set in
any batch size and merges across workers like the segmentation meters:
  ECE     15 equal-width bins over [0, 1], bin b = [b/15, (b+1)/15) (1.0 falls in the last);
          confidence = the probability of the predicted class, so for binary max(p, 1 - p)
          (bins below 0.5 stay empty), not p; sum over bins of
          (pixels in bin / pixels) * |accuracy - mean confidence|, over every annotated pixel
  Brier   mean squared error of the class probabilities; binary: (p - y)^2
  NLL     mean -log p(true class), p clamped at 1e-12
  AUROC   of u as a detector of pixel errors (argmax != truth): the chance that an erroneous
          pixel has a higher u than a correct one, ties counting half. u is histogrammed in
          `UNCERTAINTY_BINS` bins over [0, 1], so ties are within 1/UNCERTAINTY_BINS [ours].
"""

from __future__ import annotations

import torch

ECE_BINS = 15
UNCERTAINTY_BINS = 1000


class CalibrationMeter:
    """Accumulates calibration statistics over pixels."""

    def __init__(self) -> None:
        self.bins = torch.zeros(3, ECE_BINS, dtype=torch.float64)  # pixels, confidence sum, correct sum
        self.totals = torch.zeros(3, dtype=torch.float64)  # pixels, Brier sum, NLL sum
        self.u_hist = torch.zeros(2, UNCERTAINTY_BINS, dtype=torch.float64)  # [correct, error] counts of u

    def update(self, probs: torch.Tensor, truth: torch.Tensor, uncertainty: torch.Tensor | None = None) -> None:
        """Args:
        probs: (N, K, H, W) class probabilities (binary: K = 2, background and foreground).
        truth: (N, H, W) class ids of N annotated frames.
        uncertainty: (N, H, W) u in [0, 1], or None.
        """
        if probs.numel() == 0:
            return
        probs = probs.detach().double().cpu().flatten(2)  # (N, K, P)
        truth = truth.detach().long().cpu().flatten(1)  # (N, P)
        confidence, predicted = probs.max(1)
        correct = (predicted == truth).double()
        index = (confidence * ECE_BINS).long().clamp(max=ECE_BINS - 1).flatten()
        self.bins[0] += torch.bincount(index, minlength=ECE_BINS)
        self.bins[1] += torch.bincount(index, weights=confidence.flatten(), minlength=ECE_BINS)
        self.bins[2] += torch.bincount(index, weights=correct.flatten(), minlength=ECE_BINS)

        one_hot = torch.nn.functional.one_hot(truth, probs.shape[1]).permute(0, 2, 1).double()
        brier = ((probs - one_hot) ** 2).sum(1)
        if probs.shape[1] == 2:
            brier = brier / 2  # the binary convention (p - y)^2
        p_true = probs.gather(1, truth.unsqueeze(1)).squeeze(1)
        self.totals += torch.stack(
            [torch.tensor(float(truth.numel()), dtype=torch.float64), brier.sum(), -p_true.clamp(min=1e-12).log().sum()]
        )
        if uncertainty is not None:
            u_index = (
                (uncertainty.detach().double().cpu().flatten() * UNCERTAINTY_BINS).long().clamp(0, UNCERTAINTY_BINS - 1)
            )
            error = (1 - correct).long().flatten()
            self.u_hist += torch.bincount(error * UNCERTAINTY_BINS + u_index, minlength=2 * UNCERTAINTY_BINS).view(
                2, -1
            )

    def state(self) -> torch.Tensor:
        return torch.cat([self.bins.flatten(), self.totals, self.u_hist.flatten()])

    def merge(self, state: torch.Tensor) -> None:
        state = state.to(torch.float64)
        sizes = [self.bins.numel(), self.totals.numel(), self.u_hist.numel()]
        bins, totals, u_hist = state.split(sizes)
        self.bins += bins.view_as(self.bins)
        self.totals += totals
        self.u_hist += u_hist.view_as(self.u_hist)

    def reliability(self) -> list[dict[str, float]]:
        """Per confidence bin: its range, pixel share, mean confidence and accuracy (NaN when empty)."""
        pixels, confidence, correct = self.bins
        total = pixels.sum().item()
        rows = []
        for b in range(ECE_BINS):
            n = pixels[b].item()
            rows.append(
                {
                    "bin_low": b / ECE_BINS,
                    "bin_high": (b + 1) / ECE_BINS,
                    "share": n / total if total else 0.0,
                    "confidence": confidence[b].item() / n if n else float("nan"),
                    "accuracy": correct[b].item() / n if n else float("nan"),
                }
            )
        return rows

    def compute(self) -> dict[str, float]:
        """{"ece", "brier", "nll", "error_rate", "auroc_u", "pixels"}; NaN where undefined."""
        pixels, brier, nll = self.totals.tolist()
        if not pixels:
            nan = float("nan")
            return {"ece": nan, "brier": nan, "nll": nan, "error_rate": nan, "auroc_u": nan, "pixels": 0}
        counts, confidence, correct = self.bins
        ece = ((confidence - correct).abs().sum() / pixels).item()  # sum_b n_b/N * |conf_b - acc_b|
        return {
            "ece": ece,
            "brier": brier / pixels,
            "nll": nll / pixels,
            "error_rate": 1 - correct.sum().item() / pixels,
            "auroc_u": self._auroc(),
            "pixels": int(pixels),
        }

    def _auroc(self) -> float:
        correct, error = self.u_hist
        n_correct, n_error = correct.sum().item(), error.sum().item()
        if not n_correct or not n_error:
            return float("nan")
        below = torch.cumsum(correct, 0) - correct  # correct pixels with a lower u bin
        wins = (error * (below + 0.5 * correct)).sum().item()
        return wins / (n_correct * n_error)
