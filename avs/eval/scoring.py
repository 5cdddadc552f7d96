"""Scoring of the evaluate stage: J/F per subset and condition, calibration, attribution, head comparison."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from avs.data.batch import ClipBatch
from avs.eval.attribution import SoundingPickMeter
from avs.eval.calibration import CalibrationMeter
from avs.eval.metrics import BinaryMeter, DatasetMeter, SemanticMeter
from avs.model.saved import class_probabilities, foreground_probability


class EvaluationScores:
    """Every meter the evaluation fills, by audio condition (clean, muted, swapped, noise_<snr>db).

    `update` takes one batch's model outputs under one condition; `compute` gives the nested
    metrics of evaluate.json (test, calibration, robustness, attribution).
    """

    def __init__(self, num_classes: int, compat: bool, absent_as_zero: bool = False, avss: bool = False):
        self.num_classes = num_classes
        self.conditions: list[str] = []
        self.binary: dict[tuple[str, str], BinaryMeter] = defaultdict(BinaryMeter)  # (condition, subset)
        self.compat = BinaryMeter(compat=True) if compat else None
        self.dataset = DatasetMeter(max(2, num_classes), absent_as_zero=absent_as_zero)
        self.semantic = SemanticMeter(num_classes) if num_classes > 1 else None
        self.semantic_compat = SemanticMeter(num_classes, all_classes=True) if compat and avss else None
        self.visual_only: dict[tuple[str, str], BinaryMeter] = defaultdict(BinaryMeter)  # (clean|muted, subset)
        self.calibration: dict[str, CalibrationMeter] = defaultdict(CalibrationMeter)  # final/raw x all/transition
        self.picks: dict[str, SoundingPickMeter] = defaultdict(SoundingPickMeter)  # by subset, clips with visible masks
        # J and F of the final p' and of the raw head m, on all frames and on sounding-state transitions
        self.heads: dict[str, BinaryMeter] = defaultdict(BinaryMeter)  # "<final|raw><|_transition>"

    def update(self, condition: str, batch: ClipBatch, outputs: dict[str, Any]) -> None:
        if condition not in self.conditions:
            self.conditions.append(condition)
        probs = foreground_probability(outputs["logits"])  # (B, T, H, W)
        silent = condition == "muted"  # muted audio: nothing sounds, the right answer is empty
        truth = torch.zeros_like(batch.masks, dtype=torch.bool) if silent else batch.masks > 0
        labelled = batch.labelled
        for index, subset in enumerate(batch.subset):
            keep = labelled[index]
            visible = batch.visible[index][keep] if batch.has_visible[index] else None
            for name in (subset, "all"):
                self.binary[condition, name].update(probs[index][keep], truth[index][keep])
                if visible is not None and condition in ("clean", "muted"):
                    self.visual_only[condition, name].update(visible.float(), truth[index][keep])
                if visible is not None and condition == "clean":
                    self.picks[name].update(probs[index][keep], truth[index][keep], visible > 0)
        if condition != "clean":
            return
        if self.compat is not None:
            self.compat.update(probs[labelled], truth[labelled])
        class_probs = class_probabilities(outputs["logits"])  # (B, T, K, H, W)
        classes = batch.masks.long() if self.num_classes > 1 else truth.long()
        self.dataset.update(class_probs.argmax(2)[labelled], classes[labelled])
        if self.semantic is not None:
            self.semantic.update(class_probs.argmax(2)[labelled], classes[labelled])
        if self.semantic_compat is not None:  # avss/test.py scores the padded frames as background
            scored = labelled if batch.padded is None else labelled | batch.padded
            self.semantic_compat.update(class_probs.argmax(2)[scored], classes[scored])
        # frames whose sounding state differs from the previous frame's
        transition = torch.zeros_like(labelled)
        transition[:, 1:] = batch.sounding[:, 1:] != batch.sounding[:, :-1]
        raw_probs = foreground_probability(outputs["mask_logits"])
        for name, p in (("final", probs), ("raw", raw_probs)):
            for frames, suffix in ((labelled, ""), (labelled & transition, "_transition")):
                if name + suffix != "final":  # final on all frames: the test J above
                    self.heads[name + suffix].update(p[frames], truth[frames])
        u = outputs["uncertainty"]
        raw = class_probabilities(outputs["mask_logits"])
        for name, p in (("final", class_probs), ("raw", raw)):
            for frames, suffix in ((labelled, ""), (labelled & transition, "_transition")):
                self.calibration[name + suffix].update(p[frames], classes[frames], None if u is None else u[frames])

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {"test": {}, "calibration": {}, "robustness": {}, "attribution": {}}
        for (condition, subset), meter in sorted(self.binary.items()):
            result = meter.compute()
            if condition == "clean":
                prefix = "" if subset == "all" else f"{subset}_"
                out["test"][f"{prefix}J"], out["test"][f"{prefix}F"] = result["J"], result["F"]
            if subset == "all":
                out["robustness"][f"{condition}_J"] = result["J"]
            else:
                out["robustness"][f"{condition}_{subset}_J"] = result["J"]
        out["test"]["frames"] = self.binary["clean", "all"].compute()["frames"]
        if self.compat is not None:
            compat = self.compat.compute()
            out["test"]["compat_J"], out["test"]["compat_F"] = compat["J"], compat["F"]
        dataset = self.dataset.compute()
        out["test"].update({"dataset_J": dataset["J"], "dataset_F": dataset["F"], "dataset_J&F": dataset["J&F"]})
        if self.semantic is not None:
            semantic = self.semantic.compute()
            out["test"].update({"avss_mIoU": semantic["J"], "avss_F": semantic["F"]})
        if self.semantic_compat is not None:
            semantic = self.semantic_compat.compute()
            out["test"].update({"avss_compat_mIoU": semantic["J"], "avss_compat_F": semantic["F"]})
        for name, meter in sorted(self.heads.items()):
            result = meter.compute()
            if result["frames"]:
                prefix = name.removeprefix("final_") + "_"  # transition_J, raw_J, raw_transition_J
                out["test"][f"{prefix}J"], out["test"][f"{prefix}F"] = result["J"], result["F"]
        for name, meter in sorted(self.calibration.items()):
            out["calibration"][name] = {k: v for k, v in meter.compute().items()}
        for subset, meter in sorted(self.picks.items()):
            if meter.frames:  # s4 never has a silent object; datasets without visible masks have none
                out["attribution"].update({f"{subset}_{k}": v for k, v in meter.compute().items()})
        for (condition, subset), meter in sorted(self.visual_only.items()):
            out["robustness"][f"visual_only_{condition}" + ("" if subset == "all" else f"_{subset}") + "_J"] = (
                meter.compute()["J"]
            )
        return out
