"""The evaluate stage's pictures: reliability diagrams and per-clip overlays (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from avs.data.batch import ClipBatch
from avs.eval.calibration import ECE_BINS, CalibrationMeter
from avs.model.saved import foreground_probability


def plot_reliability(meters: dict[str, CalibrationMeter], path: str | Path, title: str = "Reliability") -> Path:
    """A reliability diagram (accuracy against confidence per bin, with pixel shares) for each meter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    width = 1 / ECE_BINS / (len(meters) + 1)
    for offset, (name, meter) in enumerate(meters.items()):
        rows = meter.reliability()
        centres = [(r["bin_low"] + r["bin_high"]) / 2 for r in rows]
        top.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o",
            markersize=3,
            label=f"{name} (ECE {meter.compute()['ece']:.3f})",
        )
        bottom.bar(
            [c + (offset - len(meters) / 2) * width for c in centres],
            [r["share"] for r in rows],
            width=width,
            label=name,
        )
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel="confidence (probability of the predicted class)", ylabel="pixel share", yscale="log")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def draw_overlays(batch: ClipBatch, outputs: dict[str, Any], folder: Path, quota: dict[str, int]) -> list[Path]:
    """One PNG per clip while its subset's `quota` lasts: rows frame / truth / prediction / uncertainty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    probs = foreground_probability(outputs["logits"])
    u = outputs["uncertainty"]
    written = []
    for index, subset in enumerate(batch.subset):
        if quota.get(subset, 0) <= 0:
            continue
        quota[subset] -= 1
        frames = int(batch.labelled[index].sum()) or batch.frames.shape[1]
        figure, axes = plt.subplots(4, frames, figsize=(1.6 * frames, 6.6), squeeze=False)
        for t in range(frames):
            image = batch.frames[index, t].permute(1, 2, 0).numpy()
            panels = [
                (image, None),
                (batch.masks[index, t].numpy() > 0, "gray"),
                (probs[index, t].numpy() > 0.5, "gray"),
                (u[index, t].numpy() if u is not None else np.zeros(image.shape[:2]), "magma"),
            ]
            for row, (panel, cmap) in enumerate(panels):
                axes[row, t].imshow(panel, cmap=cmap, vmin=0, vmax=1 if cmap else None)
                axes[row, t].set_axis_off()
            axes[0, t].set_title(f"t={t}" + (" sounding" if batch.sounding[index, t] else ""), fontsize=7)
        for row, label in enumerate(("frame", "truth", "prediction", "uncertainty")):
            axes[row, 0].text(
                -0.1, 0.5, label, transform=axes[row, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8
            )
        figure.suptitle(f"{batch.clip_id[index]} ({batch.subset[index]})", fontsize=9)
        figure.tight_layout()
        path = folder / f"{batch.clip_id[index].replace('/', '_')}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written
