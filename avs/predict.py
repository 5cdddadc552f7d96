"""`avs predict VIDEO --model URI_OR_PATH --out DIR`: segment the sounding objects of any video.

The video is cut into clips of T seconds (the last clip overlaps the one before when the length
is not a multiple of T); each second contributes its middle frame and its audio, as in training.
Writes to DIR:
    masks/second_NNNNN.png     the sounding-object mask of each second (0/255, source resolution)
    overlay.mp4                the video at one frame per second: mask outlined in green on the
                               left, uncertainty u as a heat map on the right, original audio
    summary.json               per-second sounding share and mean uncertainty, and the inputs
Inference only: `torch.inference_mode()`, and nothing of the training engine (Ray) is imported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from avs.data.audio import split_seconds
from avs.data.errors import DataError
from avs.data.media import SAMPLE_RATE, read_audio, read_video_frames, write_clip_video
from avs.eval.inference import inference_size, segment
from avs.model.saved import foreground_probability, load_model
from avs.track.registry import resolve_model_folder


def predict_video(
    video: str | Path,
    model: str,
    out: str | Path,
    clip_seconds: int = 5,
    tracking_uri: str | None = None,
    progress: bool = True,
    image_size: int | None = None,
    flip: bool | None = None,
    guided_kernel: int | None = None,
) -> dict[str, Any]:
    """Run the model over `video`; returns the summary written to `out/summary.json`.

    `image_size`, `flip` and `guided_kernel` (test-time size, mirror averaging and guided filter
    window, 0 = off) default to the model's `evaluate` settings, as the `evaluate` stage ran it.
    """
    video, out = Path(video), Path(out)
    if not video.is_file():
        raise DataError(video, "video file not found")
    if clip_seconds < 1:
        raise ValueError(f"clip_seconds must be at least 1, got {clip_seconds}")
    if image_size is not None and image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    network, cfg = load_model(resolve_model_folder(model, tracking_uri))
    waveform = read_audio(video, allow_silent=True)  # a silent track is valid input: nothing sounds
    seconds = min(_whole_seconds(video), len(waveform) // SAMPLE_RATE)
    if seconds < clip_seconds:
        raise DataError(
            video,
            f"video is {seconds} s long (with audio); at least {clip_seconds} s are needed "
            "(or pass a smaller --clip-seconds)",
        )
    frames = read_video_frames(video, seconds)  # (S, H, W, 3) uint8
    audio = split_seconds(waveform, seconds, video, max_shortfall_s=0.0)  # (S, 16000); seconds fit the audio
    size = image_size or inference_size(cfg)
    flip = cfg.evaluate.flip if flip is None else flip
    guided_kernel = cfg.evaluate.guided_kernel if guided_kernel is None else guided_kernel
    if guided_kernel and (guided_kernel < 3 or guided_kernel % 2 == 0):
        raise ValueError(f"guided_kernel must be 0 (off) or odd and at least 3, got {guided_kernel}")

    probability = np.zeros(frames.shape[:3], np.float32)
    uncertainty = np.zeros(frames.shape[:3], np.float32)
    starts = list(range(0, seconds - clip_seconds + 1, clip_seconds))
    if starts[-1] + clip_seconds < seconds:
        starts.append(seconds - clip_seconds)
    with torch.inference_mode():
        for start in tqdm(starts, desc=f"predict {video.name}", unit="clip", disable=not progress):
            window = slice(start, start + clip_seconds)
            x = torch.from_numpy(frames[window]).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W), source size
            outputs = segment(
                network,
                x[None],
                torch.from_numpy(audio[window])[None],
                size=size,
                flip=flip,
                guided_kernel=guided_kernel,
                guided_eps=cfg.evaluate.guided_eps,
            )
            p = foreground_probability(outputs["logits"])[0]  # (T, H, W)
            u = outputs["uncertainty"][0] if outputs["uncertainty"] is not None else torch.zeros_like(p)
            probability[window], uncertainty[window] = p.numpy(), u.float().numpy()

    masks = probability > 0.5
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for second, mask in enumerate(masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"second_{second:05d}.png")
    overlay = np.stack([_overlay(f, m, u) for f, m, u in zip(frames, masks, uncertainty)])
    write_clip_video(out / "overlay.mp4", _even(overlay), waveform[: seconds * SAMPLE_RATE], fps=4)
    summary = {
        "video": str(video),
        "model": model,
        "seconds": seconds,
        "clip_seconds": clip_seconds,
        "image_size": size,
        "flip": flip,
        "guided_kernel": guided_kernel,
        "frame_size": list(frames.shape[1:3]),
        "per_second": [
            {"second": s, "sounding_share": round(float(m.mean()), 5), "mean_uncertainty": round(float(u.mean()), 5)}
            for s, (m, u) in enumerate(zip(masks, uncertainty))
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _whole_seconds(video: Path) -> int:
    import decord

    try:
        reader = decord.VideoReader(str(video), num_threads=1)
    except (RuntimeError, decord.DECORDError) as err:
        raise DataError(
            video, f"cannot open video (corrupt or not a video?): {str(err).strip().splitlines()[-1]}"
        ) from None
    fps = float(reader.get_avg_fps())
    return int(math.floor(len(reader) / fps + 1e-6)) if fps > 0 else 0


def _overlay(frame: np.ndarray, mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Frame with the mask tinted and outlined (left) beside the uncertainty heat map on it (right)."""
    import matplotlib

    tinted = frame.astype(np.float32)
    tinted[mask] = 0.6 * tinted[mask] + 0.4 * np.array([0, 255, 0], np.float32)
    edge = mask ^ _erode(mask)
    tinted[edge] = [0, 255, 0]
    heat = matplotlib.colormaps["magma"](np.clip(u, 0, 1))[..., :3] * 255
    right = 0.4 * frame.astype(np.float32) + 0.6 * heat
    return np.concatenate([tinted, right], 1).clip(0, 255).astype(np.uint8)


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _even(frames: np.ndarray) -> np.ndarray:
    """Crop to even height and width (H.264 with 4:2:0 chroma needs them)."""
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    return np.ascontiguousarray(frames[:, :h, :w])
