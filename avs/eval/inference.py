"""Test-time inference: the model at a chosen size, optionally averaged with its mirror image [ours].

Training sees random resized crops (`train.augment.crop_scale_min`), so objects appear larger
there than in a whole frame at the same size; running the trained model on a larger frame at
test time (`evaluate.image_size`) matches that scale and gives the decoder more pixels per
object. On the embedded default (validation split, 128 px training) 176 px raised J from 0.560
to 0.602 and averaging with the horizontally flipped frames (`evaluate.flip`) to 0.612. The
`evaluate` stage, `avs predict` and the registered MLflow model all go through `segment`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avs.config import Config, EvaluateConfig

MAPS = ("logits", "mask_logits", "uncertainty")  # the per-pixel outputs that `segment` returns


def inference_size(cfg: Config, evaluate: EvaluateConfig | None = None) -> int:
    """The square size a model trained with `cfg` is run at: `evaluate.image_size` (of `evaluate`
    when given, e.g. the current params, else the model's own), else the training size."""
    return (evaluate or cfg.evaluate).image_size or cfg.train.image_size


def segment(model: torch.nn.Module, frames: torch.Tensor, audio: torch.Tensor, *, size: int,
            flip: bool) -> dict[str, torch.Tensor | None]:
    """Per-pixel outputs of `model` for frames of any size, at that size.

    Args:
        frames: (B, T, 3, H, W) float in [0, 1].
        audio: (B, T, 16000) waveform.
        size: the frames are resized to size x size for the model (no-op when already so) and
            its maps resized back to H x W.
        flip: also run the horizontally mirrored frames and average the two (logits averaged).

    Returns:
        logits, mask_logits (B, T, K, H, W) and uncertainty (B, T, H, W) or None (no UE).
    """
    b, t, _, height, width = frames.shape
    x = frames.flatten(0, 1)
    if (height, width) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.unflatten(0, (b, t))
    outputs = _maps(model(x, audio))
    if flip:
        mirrored = _maps(model(x.flip(-1), audio))
        outputs = {k: None if v is None else (v + mirrored[k].flip(-1)) / 2 for k, v in outputs.items()}
    if (height, width) != (size, size):
        outputs = {k: None if v is None else _resize(v, (height, width)) for k, v in outputs.items()}
    return outputs


def _maps(outputs: dict) -> dict[str, torch.Tensor | None]:
    return {k: outputs[k] for k in MAPS}


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, [K,] h, w) -> (B, T, [K,] *size), bilinear."""
    lead = x.shape[:-2]
    y = F.interpolate(x.float().reshape(-1, 1, *x.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return y.reshape(*lead, *size)
