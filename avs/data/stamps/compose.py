"""Compose one clip the way VPO was made: real cut-outs and their real sounds over a real photo.

A `Scene` says which objects appear where in each second and which of them sound; `render_scene`
turns it into frames, exact masks and the mixed 16 kHz audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from avs.data.media import SAMPLE_RATE
from avs.data.stamps.assets import Stamp

_FADE_S = 0.01  # fade each second's excerpt in and out, so seconds join without clicks
_EXCERPT_HOP_S = 0.05


@dataclass(frozen=True)
class Placement:
    """Where an object is in one second: centre (x, y) and longest side, in pixels."""

    x: float
    y: float
    side: float


@dataclass(frozen=True)
class SceneObject:
    stamp: Stamp
    placements: tuple[Placement, ...]  # one per second
    sounding: tuple[bool, ...]  # one per second


@dataclass(frozen=True)
class Scene:
    background: np.ndarray  # (S, S, 3) uint8, already cropped to the clip's size
    objects: tuple[SceneObject, ...]  # drawn in this order (later ones occlude earlier ones)


@dataclass(frozen=True)
class RenderedClip:
    frames: np.ndarray  # (T, S, S, 3) uint8
    sounding_masks: np.ndarray  # (T, S, S) bool: visible pixels of the objects sounding then
    visible_masks: np.ndarray  # (T, S, S) bool: visible pixels of every object
    audio: np.ndarray  # (T * 16000,) float32
    sounding: np.ndarray  # (T, K) bool, per object


def crop_background(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """A random square crop (half to all of the shorter side) resized to size x size."""
    height, width = photo.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(height, width))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def drift(rng: np.random.Generator, start: Placement, seconds: int, size: int) -> tuple[Placement, ...]:
    """Small moves and rescales from second to second, kept inside the frame."""
    placements, current = [], start
    for _ in range(seconds):
        placements.append(current)
        side = float(np.clip(current.side * rng.uniform(0.95, 1.05), 0.15 * size, 0.9 * size))
        step = 0.03 * size
        current = Placement(
            float(np.clip(current.x + rng.uniform(-step, step), side / 3, size - side / 3)),
            float(np.clip(current.y + rng.uniform(-step, step), side / 3, size - side / 3)),
            side,
        )
    return tuple(placements)


def render_scene(
    rng: np.random.Generator, scene: Scene, source_dbfs: float, noise_dbfs: float
) -> RenderedClip:
    """Frames, exact masks and mixed audio of a scene."""
    size = scene.background.shape[0]
    seconds = len(scene.objects[0].placements)
    frames = np.empty((seconds, size, size, 3), np.uint8)
    sounding_masks = np.zeros((seconds, size, size), bool)
    visible_masks = np.zeros((seconds, size, size), bool)
    for t in range(seconds):
        canvas = scene.background.astype(np.float32)
        covers = []
        for obj in scene.objects:
            alpha, rgb = _paste(obj.stamp.rgba, obj.placements[t], size)
            canvas = canvas * (1.0 - alpha[..., None]) + rgb * alpha[..., None]
            covers.append(alpha >= 0.5)
        frames[t] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        hidden = np.zeros((size, size), bool)
        for obj, cover in zip(reversed(scene.objects), reversed(covers)):
            visible = cover & ~hidden  # what later objects leave uncovered
            hidden |= cover
            visible_masks[t] |= visible
            if obj.sounding[t]:
                sounding_masks[t] |= visible
    sounding = np.array([obj.sounding for obj in scene.objects]).T  # (T, K)
    audio = mix_audio(rng, scene.objects, source_dbfs, noise_dbfs)
    return RenderedClip(frames, sounding_masks, visible_masks, audio, sounding)


def mix_audio(
    rng: np.random.Generator, objects: tuple[SceneObject, ...], source_dbfs: float, noise_dbfs: float
) -> np.ndarray:
    """Each sounding object's recording in its sounding seconds, over low-level noise."""
    seconds = len(objects[0].sounding)
    noise_rms = 10.0 ** (noise_dbfs / 20.0)
    audio = rng.normal(0.0, noise_rms, seconds * SAMPLE_RATE).astype(np.float32)
    fade = _fade_window()
    for obj in objects:
        for t, on in enumerate(obj.sounding):
            if on:
                excerpt = loudest_excerpt(rng, obj.stamp.audio)
                excerpt *= 10.0 ** (source_dbfs / 20.0) / max(_rms(excerpt), 1e-8)
                audio[t * SAMPLE_RATE:(t + 1) * SAMPLE_RATE] += excerpt * fade
    peak = float(np.abs(audio).max())
    return audio / peak * 0.99 if peak > 0.99 else audio


def loudest_excerpt(rng: np.random.Generator, recording: np.ndarray) -> np.ndarray:
    """One second of a recording, picked at random among its loud seconds.

    Short recordings are repeated to fill the second, so a sounding second is never silent.
    """
    if recording.shape[0] < SAMPLE_RATE:
        recording = np.tile(recording, SAMPLE_RATE // recording.shape[0] + 1)
    hop = int(_EXCERPT_HOP_S * SAMPLE_RATE)
    starts = np.arange(0, recording.shape[0] - SAMPLE_RATE + 1, hop)
    energy = np.array([_rms(recording[s:s + SAMPLE_RATE]) for s in starts])
    loud = starts[energy >= 0.5 * energy.max()]
    start = int(rng.choice(loud))
    return recording[start:start + SAMPLE_RATE].astype(np.float32).copy()


def _paste(rgba: np.ndarray, where: Placement, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The stamp scaled to `where.side` and placed on a size x size canvas: alpha (S, S), rgb (S, S, 3)."""
    height, width = rgba.shape[:2]
    scale = where.side / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    # Premultiplied resampling keeps the transparent pixels' colour from bleeding into edges.
    premultiplied = rgba.astype(np.float32)
    premultiplied[..., :3] *= premultiplied[..., 3:] / 255.0
    channels = [
        np.asarray(Image.fromarray(premultiplied[..., c]).resize((new_w, new_h), Image.Resampling.BILINEAR))
        for c in range(4)
    ]
    small = np.stack(channels, axis=-1)
    alpha_small = np.clip(small[..., 3] / 255.0, 0.0, 1.0)
    rgb_small = small[..., :3] / np.maximum(alpha_small[..., None], 1e-6)
    alpha = np.zeros((size, size), np.float32)
    rgb = np.zeros((size, size, 3), np.float32)
    left, top = round(where.x - new_w / 2), round(where.y - new_h / 2)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + new_h, size), min(left + new_w, size)
    if y1 > y0 and x1 > x0:
        alpha[y0:y1, x0:x1] = alpha_small[y0 - top:y1 - top, x0 - left:x1 - left]
        rgb[y0:y1, x0:x1] = rgb_small[y0 - top:y1 - top, x0 - left:x1 - left]
    return alpha, np.clip(rgb, 0.0, 255.0)


def _fade_window() -> np.ndarray:
    ramp = int(_FADE_S * SAMPLE_RATE)
    window = np.ones(SAMPLE_RATE, np.float32)
    window[:ramp] = np.linspace(0.0, 1.0, ramp, dtype=np.float32)
    window[-ramp:] = np.linspace(1.0, 0.0, ramp, dtype=np.float32)
    return window


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
