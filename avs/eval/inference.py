"""Test-time inference: the model at a chosen size, optionally averaged with its mirror image [ours].

Training sees random resized crops, so objects appear larger there than in a whole frame at the
same size; running the trained model on a larger frame at test time (`evaluate.image_size`)
matches that scale, and averaging with the mirrored frames (`evaluate.flip`) removes some noise.
`evaluate.guided_kernel` [ours] then passes the mask probabilities through a guided filter (He et
al., "Guided Image Filtering", kornia's `guided_blur`) with the frame as the guide, so that a mask
drawn at 1/4 (or 1/2) scale snaps to the object's edges. The `evaluate` stage, `avs predict` and
the registered MLflow model all go through `segment`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from kornia.filters import guided_blur

from avs.config import Config, EvaluateConfig

MAPS = ("logits", "mask_logits", "uncertainty")  # the per-pixel outputs that `segment` returns


def inference_size(cfg: Config, evaluate: EvaluateConfig | None = None) -> int:
    """The square size a model trained with `cfg` is run at: `evaluate.image_size` (of `evaluate`
    when given, e.g. the current params, else the model's own), else the training size."""
    return (evaluate or cfg.evaluate).image_size or cfg.train.image_size


def segment(
    model: torch.nn.Module,
    frames: torch.Tensor,
    audio: torch.Tensor,
    *,
    size: int,
    flip: bool,
    guided_kernel: int = 0,
    guided_eps: float = 1e-4,
    embed_audio: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor | None]:
    """Per-pixel outputs of `model` for frames of any size, at that size.

    Args:
        frames: (B, T, 3, H, W) float in [0, 1].
        audio: (B, T, 16000) waveform.
        size: the frames are resized to size x size for the model (no-op when already so) and
            its maps resized back to H x W.
        flip: also run the horizontally mirrored frames and average the two (logits averaged).
        guided_kernel: window (odd, pixels at `size`) of the guided filter applied to the mask
            probabilities, the resized frames as guide; 0 = off. guided_eps: its regulariser.
        embed_audio: what turns `audio` into the model's audio embeddings (default
            `model.embed_audio`; an `AudioEmbeddingCache` where seconds repeat). They are computed
            once for both the frames and their mirror.

    Returns:
        logits, mask_logits (B, T, K, H, W) and uncertainty (B, T, H, W) or None (no UE).
    """
    b, t, _, height, width = frames.shape
    x = frames.flatten(0, 1)
    if (height, width) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.unflatten(0, (b, t))
    embeddings = (embed_audio or model.embed_audio)(audio)  # (B, k T, A)
    outputs = _maps(model(x, audio_embeddings=embeddings))
    if flip:
        mirrored = _maps(model(x.flip(-1), audio_embeddings=embeddings))
        outputs = {k: None if v is None else (v + mirrored[k].flip(-1)) / 2 for k, v in outputs.items()}
    if guided_kernel:
        outputs["logits"], outputs["mask_logits"] = guided_logits(
            (outputs["logits"], outputs["mask_logits"]), x, guided_kernel, guided_eps
        )
    if (height, width) != (size, size):
        outputs = {k: None if v is None else _resize(v, (height, width)) for k, v in outputs.items()}
    return outputs


def guided_logits(
    logits: tuple[torch.Tensor, ...], frames: torch.Tensor, kernel: int, eps: float
) -> tuple[torch.Tensor, ...]:
    """Each (B, T, K, h, w) logit map's probabilities guided-filtered by frames (B, T, 3, h, w).

    Binary maps (K = 1) filter the sigmoid, class maps the softmax (renormalised); the result is
    returned as logits again (float32), clamped to probabilities in [1e-4, 1 - 1e-4].
    """
    probs = [torch.sigmoid(m.float()) if m.shape[2] == 1 else m.float().softmax(2) for m in logits]
    sizes = [p.shape[2] for p in probs]
    stacked = torch.cat(probs, 2).flatten(0, 1)  # (B*T, sum K, h, w): one set of guide statistics
    # separable: the window means as two 1-D passes, equal to the 2-D window to float rounding and
    # faster (benchmarks/cpu_kernels.py)
    filtered = guided_blur(frames.flatten(0, 1).float(), stacked, kernel, eps, separable=True).unflatten(
        0, frames.shape[:2]
    )
    out = []
    for q in filtered.split(sizes, 2):
        q = q.clamp(_FLOOR, 1 - _FLOOR)
        out.append(torch.logit(q) if q.shape[2] == 1 else (q / q.sum(2, keepdim=True)).log())
    return tuple(out)


_FLOOR = 1e-4


def _maps(outputs: dict) -> dict[str, torch.Tensor | None]:
    return {k: outputs[k] for k in MAPS}


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, [K,] h, w) -> (B, T, [K,] *size), bilinear."""
    lead = x.shape[:-2]
    y = F.interpolate(x.float().reshape(-1, 1, *x.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return y.reshape(*lead, *size)
