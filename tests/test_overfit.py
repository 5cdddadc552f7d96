"""A small RAVS model memorises four clips of the embedded set: the whole model can learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avs.config import config_from_dict
from avs.data.clip import load_clip
from avs.data.sources.stamps import load_stamps_source
from avs.model import build_model, compute_losses
from avs.train.step import freeze_audio_encoder, set_training_mode


def frame_jaccard(sounding: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-frame IoU (AVSBench protocol: an empty truth scores the share of correctly empty pixels)."""
    inter = (sounding & truth).flatten(2).sum(-1).float()
    union = (sounding | truth).flatten(2).sum(-1).float()
    empty = truth.flatten(2).sum(-1) == 0
    return torch.where(empty, (~sounding).flatten(2).float().mean(-1), inter / union.clamp(min=1))


@pytest.mark.slow
def test_a_small_model_overfits_four_multi_source_clips(stamps_root):
    torch.manual_seed(0)
    refs = [r for r in load_stamps_source(stamps_root).clips if r.split == "train" and r.subset == "ms3"][:4]
    clips = [load_clip(r) for r in refs]
    frames = torch.tensor(np.stack([c.frames for c in clips])).permute(0, 1, 4, 2, 3).float() / 255  # (4, 5, 3, 96, 96)
    masks = torch.tensor(np.stack([c.masks for c in clips])).long()  # (4, 5, 96, 96)
    labelled = torch.tensor(np.stack([c.annotated for c in clips]))
    audio = torch.tensor(np.stack([c.audio for c in clips]))  # (4, 5, 16000)
    assert masks.any() and (~masks.flatten(2).any(-1)).any()  # sounding and silent frames both present

    cfg = config_from_dict({"model": {"backbone_weights": None, "decoder_dim": 32, "ama": {"groups": [8, 8, 8, 4]}}})
    model = build_model(cfg)
    freeze_audio_encoder(model)  # the default: aisfx, frozen
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0)
    best = 0.0
    for step in range(1, 401):
        set_training_mode(model, frozen_audio=True)
        losses = compute_losses(model(frames, audio), masks, labelled, cfg.loss, epoch=step / 20)
        optimiser.zero_grad()
        losses["total"].backward()
        optimiser.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                sounding = torch.sigmoid(model(frames, audio)["logits"][:, :, 0]) > 0.5
            best = max(best, frame_jaccard(sounding, masks == 1).mean().item())
            if best >= 0.9:
                break
    assert best >= 0.9, f"J = {best:.3f} after {step} steps"
