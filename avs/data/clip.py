"""The source-independent clip: where its files are (`ClipRef`) and its decoded arrays (`Clip`).

Every adapter (AVSBench S4/MS3/AVSS, VPO, the embedded `stamps` set) only has to say where a
clip's files are; `load_clip` is the single decoding path they all share.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from avs.data.audio import MAX_AUDIO_SHORTFALL_S, audio_shortfall_s, centred_window, split_seconds
from avs.data.errors import DataError
from avs.data.media import SAMPLE_RATE, read_audio, read_image, read_png_values, read_video_frames

# binary: 0/255 (or 0/1) PNGs; semantic: PNG of class ids; palette_rgb: colour PNG in the
# VOC bit-interleaved palette (AVSBench-semantic `labels_rgb`); category_ids: PNG of COCO
# category ids with 0 background and 255 ignore (VPO), mapped through `ClipRef.class_map`.
MaskFormat = Literal["binary", "semantic", "palette_rgb", "category_ids"]
IGNORE_ID = 255  # VPO's COCO-style boundary / ignore label


@dataclass(frozen=True)
class ClipRef:
    """Where one clip's files are. Cheap to pickle to worker processes.

    `masks[t]` lists the PNGs whose union is frame t's ground truth (VPO has one per instance);
    an empty tuple means frame t is not annotated.

    Audio: with `audio_window_s == 0`, T seconds from `audio_offset_s` of one file. Otherwise
    (VPO) the centred `audio_window_s` seconds of each file, summed; with `audio_pan`, each
    file is panned to (left, right) = ((1 - pos), pos) first and the clip keeps both channels.
    """

    clip_id: str
    subset: str
    split: str
    num_frames: int
    origin: str  # where the clip was listed, e.g. "s4_meta_data.csv line 12"
    frames: tuple[Path, ...] | Path  # one image per frame, or a video file
    audio: Path | tuple[Path, ...]  # an audio file or a video with an audio track; VPO: one per source
    masks: tuple[tuple[Path, ...], ...]
    mask_format: MaskFormat = "binary"
    num_classes: int = 2
    category_ids: tuple[int, ...] = ()
    visible_masks: tuple[Path, ...] | None = None  # every visible object, sounding or not
    sounding: tuple[bool, ...] | None = None  # None: a frame sounds iff its mask is non-empty
    audio_offset_s: float = 0.0
    audio_window_s: int = 0
    audio_pan: tuple[float, ...] | None = None  # per audio file, its position in [0, 1] (stereo)
    class_map: tuple[tuple[int, int], ...] = ()  # category_ids masks: (id, class); empty: binary

    def audio_files(self) -> tuple[Path, ...]:
        return self.audio if isinstance(self.audio, tuple) else (self.audio,)

    def files(self) -> list[Path]:
        """Every file this clip reads."""
        frames = [self.frames] if isinstance(self.frames, Path) else list(self.frames)
        masks = [p for group in self.masks for p in group]
        return [*frames, *self.audio_files(), *masks, *(self.visible_masks or ())]

    def missing_files(self) -> list[Path]:
        return [p for p in self.files() if not p.is_file()]


@dataclass
class Clip:
    """A decoded clip. T frames of H x W pixels."""

    ref: ClipRef
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) uint8 class ids (binary: 0/1); zeros where not annotated
    annotated: np.ndarray  # (T,) bool
    sounding: np.ndarray  # (T,) bool
    visible: np.ndarray | None  # (T, H, W) uint8 0/1, or None when the source lacks it
    audio: np.ndarray  # (S, 16000) float32: S = T seconds, or (VPO) the window's seconds, per channel
    category_ids: tuple[int, ...]
    audio_shortfall_s: float = 0.0  # seconds of silence padded at the end of the audio


def load_clip(ref: ClipRef, max_audio_shortfall_s: float = MAX_AUDIO_SHORTFALL_S) -> Clip:
    """Decode one clip's frames, masks and audio, checking that they agree. Audio up to
    `max_audio_shortfall_s` too short is padded with silence.

    Raises:
        DataError: naming the file at fault and what is wrong with it.
    """
    missing = ref.missing_files()
    if missing:
        raise DataError(missing[0], f"file not found (named by {ref.origin})")
    frames = _load_frames(ref)
    height, width = frames.shape[1:3]
    masks = np.zeros((ref.num_frames, height, width), np.uint8)
    annotated = np.zeros(ref.num_frames, bool)
    for t, group in enumerate(ref.masks):
        for path in group:
            mask = _load_mask(path, ref.mask_format, ref.num_classes, dict(ref.class_map))
            _check_size(path, mask, frames[t])
            masks[t] = np.maximum(masks[t], mask)
            annotated[t] = True
    visible = None
    if ref.visible_masks is not None:
        visible = np.stack([_load_mask(p, "binary", 2) for p in ref.visible_masks])
        for path, mask, frame in zip(ref.visible_masks, visible, frames):
            _check_size(path, mask, frame)
    if ref.sounding is not None:
        sounding = np.asarray(ref.sounding, bool)
    else:  # unannotated frames are taken as sounding; they carry no segmentation loss
        sounding = ~annotated | masks.reshape(ref.num_frames, -1).any(axis=1)
    audio, shortfall = _load_audio(ref, max_audio_shortfall_s)
    categories = set(ref.category_ids)
    if ref.mask_format not in ("binary", "category_ids") or ref.class_map:
        categories |= {int(c) for c in np.unique(masks[annotated]) if c != 0}
    return Clip(ref, frames, masks, annotated, sounding, visible, audio, tuple(sorted(categories)), shortfall)


def _load_audio(ref: ClipRef, max_shortfall_s: float) -> tuple[np.ndarray, float]:
    """The clip's audio as (S, 16000) seconds, and how many seconds of silence were padded."""
    if not ref.audio_window_s:
        waveform = read_audio(ref.audio)
        # An offset that would run past the end is pulled back so the window still fits.
        start = min(int(round(ref.audio_offset_s * SAMPLE_RATE)),
                    max(0, waveform.shape[0] - ref.num_frames * SAMPLE_RATE))
        audio = split_seconds(waveform[start:], ref.num_frames, ref.audio, max_shortfall_s)
        return audio, audio_shortfall_s(waveform[start:], ref.num_frames)
    windows = [centred_window(read_audio(path), ref.audio_window_s) for path in ref.audio_files()]
    if ref.audio_pan is None:
        channels = [np.sum(windows, axis=0)]
    else:
        channels = [np.sum([w * (1 - pos) for w, pos in zip(windows, ref.audio_pan)], axis=0),
                    np.sum([w * pos for w, pos in zip(windows, ref.audio_pan)], axis=0)]
    return np.concatenate([split_seconds(c, ref.audio_window_s, ref.audio_files()[0]) for c in channels]), 0.0


def _load_frames(ref: ClipRef) -> np.ndarray:
    if isinstance(ref.frames, Path):
        return read_video_frames(ref.frames, ref.num_frames)
    if len(ref.frames) != ref.num_frames:
        raise DataError(ref.frames[0], f"expected {ref.num_frames} frames, found {len(ref.frames)}")
    images = [read_image(p) for p in ref.frames]
    for path, image in zip(ref.frames, images):
        if image.shape != images[0].shape:
            raise DataError(path, f"frame is {_size(image)} but frame 1 is {_size(images[0])}")
    return np.stack(images)


def _load_mask(path: Path, mask_format: MaskFormat, num_classes: int, class_map: dict[int, int] | None = None
               ) -> np.ndarray:
    values = read_png_values(path)
    if mask_format == "category_ids":
        return _category_ids_to_classes(path, values, class_map or {})
    if mask_format == "binary":
        if values.ndim == 3:
            values = values.max(axis=2)
        if values.max(initial=0) <= 1:  # stored as 0/1
            return values.astype(np.uint8)
        return (values >= 128).astype(np.uint8)  # stored as 0/255; PIL's mode "1" threshold
    if mask_format == "palette_rgb":
        if values.ndim != 3:
            raise DataError(path, "expected an RGB colour mask (labels_rgb)")
        return _rgb_to_class_ids(path, values, num_classes)
    if values.ndim != 2:
        raise DataError(path, "expected a single-channel mask of class ids")
    if values.max(initial=0) >= num_classes:
        raise DataError(path, f"class id {values.max()} outside 0..{num_classes - 1}")
    return values


@lru_cache(maxsize=4)
def voc_palette(num_classes: int = 256) -> np.ndarray:
    """The PASCAL VOC bit-interleaved colour palette, (num_classes, 3) uint8."""
    palette = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        code, shift = index, 7
        while code:
            for channel in range(3):
                palette[index, channel] |= ((code >> channel) & 1) << shift
            code >>= 3
            shift -= 1
    return palette


def _category_ids_to_classes(path: Path, values: np.ndarray, class_map: dict[int, int]) -> np.ndarray:
    """A VPO mask of COCO category ids -> 0/1 foreground (no map) or class ids through `class_map`.

    Foreground is every value other than 0 and 255 (never a threshold). The ignore label 255
    becomes background: nothing downstream has an ignore class [ours].
    """
    if values.ndim != 2:
        raise DataError(path, "expected a single-channel mask of category ids")
    foreground = (values != 0) & (values != IGNORE_ID)
    if not class_map:
        return foreground.astype(np.uint8)
    lookup = np.zeros(256, np.int16) - 1
    lookup[0] = lookup[IGNORE_ID] = 0
    for category, index in class_map.items():
        lookup[category] = index
    classes = lookup[values]
    if (classes < 0).any():
        unknown = sorted({int(v) for v in np.unique(values[classes < 0])})
        raise DataError(path, f"category id {unknown[0]} is not among the CSV's cateId values {sorted(class_map)}")
    return classes.astype(np.uint8)


def _rgb_to_class_ids(path: Path, rgb: np.ndarray, num_classes: int) -> np.ndarray:
    palette = voc_palette(num_classes).astype(np.int32)
    keys = (rgb.astype(np.int32) << [16, 8, 0]).sum(axis=2)  # (H, W) packed colours
    palette_keys = (palette << [16, 8, 0]).sum(axis=1)
    order = np.argsort(palette_keys)
    position = np.searchsorted(palette_keys[order], keys).clip(0, num_classes - 1)
    ids = order[position]
    unknown = palette_keys[ids] != keys
    if unknown.any():
        y, x = np.argwhere(unknown)[0]
        raise DataError(path, f"colour {tuple(rgb[y, x])} at ({x}, {y}) is not in the class palette")
    return ids.astype(np.uint8)


def _check_size(path: Path, mask: np.ndarray, frame: np.ndarray) -> None:
    if mask.shape[:2] != frame.shape[:2]:
        raise DataError(path, f"mask is {_size(mask)} but its frame is {_size(frame)}")


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"
