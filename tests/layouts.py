"""Tiny fixtures that copy the real datasets' published layouts (../shared/DATASETS.md) exactly.

Each writer returns what it wrote, so tests compare the pipeline's output with the truth rather
than with the pipeline's own reading of it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from avs.data.clip import voc_palette

SIZE = 48
RATE = 16_000


@dataclass
class Expected:
    """The truth about one fixture clip."""

    split: str
    masks: np.ndarray  # (T, H, W) class ids, zeros where not annotated
    annotated: list[bool]
    frames: np.ndarray  # (T, H, W, 3)
    audio: np.ndarray  # the whole waveform written
    category_ids: list[int] = field(default_factory=list)


def smooth_frame(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A gradient with a coloured square: compresses well, so JPEG error stays small."""
    y, x = np.mgrid[0:size, 0:size]
    base = rng.uniform(40, 200, 3)
    image = base + np.stack([x, y, (x + y) / 2], axis=-1) * rng.uniform(0.3, 1.0)
    top, left = rng.integers(0, size // 2, 2)
    image[top:top + size // 3, left:left + size // 3] = rng.uniform(0, 255, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def blob_mask(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    cy, cx, r = rng.uniform(10, size - 10), rng.uniform(10, size - 10), rng.uniform(5, 12)
    return ((y - cy) ** 2 + (x - cx) ** 2 < r * r).astype(np.uint8)


def tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32)


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def _wav(path: Path, audio: np.ndarray) -> np.ndarray:
    """Write 16-bit PCM as published; returns the samples a reader gets back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, RATE, subtype="PCM_16")
    return soundfile.read(path, dtype="float32")[0]


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_s4(root: Path, seed: int = 0) -> dict[str, Expected]:
    """AVSBench S4: train annotates only frame 1; val/test all 5."""
    rng = np.random.default_rng(seed)
    clips = [("clipA", "dog", "train"), ("clipB", "baby", "val"), ("clipC", "dog", "test")]
    categories = {"baby": 1, "dog": 2}
    expected = {}
    for name, category, split in clips:
        frames = np.stack([smooth_frame(rng) for _ in range(5)])
        masks = np.stack([blob_mask(rng) for _ in range(5)])
        annotated = [True] * 5 if split != "train" else [True, False, False, False, False]
        audio = tone(rng, 4.85 if name == "clipB" else 5.0)  # the release has wavs of 4.85 s
        for i in range(5):
            _png(root / f"s4_data/visual_frames/{split}/{category}/{name}/{name}_{i + 1}.png", frames[i])
            if annotated[i]:
                _png(root / f"s4_data/gt_masks/{split}/{category}/{name}/{name}_{i + 1}.png", masks[i] * 255)
        audio = _wav(root / f"s4_data/audio_wav/{split}/{category}/{name}.wav", audio)
        masks[~np.array(annotated)] = 0
        expected[f"s4/{name}"] = Expected(split, masks, annotated, frames, audio, [categories[category]])
    _csv(root / "s4_meta_data.csv", ["name", "start_time", "category", "split"],
         [[n, "0", c, s] for n, c, s in clips])
    return expected


def write_ms3(root: Path, seed: int = 1) -> dict[str, Expected]:
    """AVSBench MS3: flat frames (`{vid}.mp4_{i}.png`), one clip nested in `{vid}/`, empty masks allowed."""
    rng = np.random.default_rng(seed)
    clips = [("vid001", "train", False), ("vid002", "test", True)]
    expected = {}
    for vid, split, nested in clips:
        frames = np.stack([smooth_frame(rng) for _ in range(5)])
        masks = np.stack([blob_mask(rng) for _ in range(5)])
        masks[2] = 0  # a silent second
        frames_dir = root / "ms3_data/visual_frames" / (vid if nested else "")
        for i in range(5):
            _png(frames_dir / f"{vid}.mp4_{i + 1}.png", frames[i])
            _png(root / f"ms3_data/gt_masks/{split}/{vid}/{vid}_{i + 1}.png", masks[i] * 255)
        audio = tone(rng, 5.0)
        audio = _wav(root / f"ms3_data/audio_wav/{split}/{vid}.wav", audio)
        expected[f"ms3/{vid}"] = Expected(split, masks, [True] * 5, frames, audio)
    _csv(root / "ms3_meta_data.csv", ["video_id", "split"], [[v, s] for v, s, _ in clips])
    return expected


AVSS_NAMES = ["background"] + [f"class_{i:02d}" for i in range(1, 71)]


def write_avss(root: Path, seed: int = 2) -> dict[str, Expected]:
    """AVSBench-semantic: v1s train (frame 0 labelled), v1m with labels_semantic, v2 (10 frames) with labels_rgb only."""
    rng = np.random.default_rng(seed)
    (root).mkdir(parents=True, exist_ok=True)
    # As released: ids 1..71 with background = 1 (the palette index is the id minus 1).
    (root / "label2idx.json").write_text(json.dumps({n: i for i, n in enumerate(AVSS_NAMES, start=1)}))
    clips = [("v1s", "uidS", "train", 5), ("v1m", "uidM", "val", 5), ("v2", "uidV", "test", 10)]
    palette = voc_palette(256)
    expected = {}
    for label, uid, split, frames_n in clips:
        clip_dir = root / label / uid
        frames = np.stack([smooth_frame(rng) for _ in range(frames_n)])
        masks = np.zeros((frames_n, SIZE, SIZE), np.uint8)
        annotated = [True] * frames_n
        if label == "v1s":
            annotated = [True] + [False] * (frames_n - 1)
        for i in range(frames_n):
            Image.fromarray(frames[i]).save(_mkdir(clip_dir / "frames") / f"{i}.jpg", quality=95)
            if not annotated[i]:
                continue
            masks[i] = blob_mask(rng) * rng.integers(1, 71)
            masks[i][blob_mask(rng) == 1] = rng.integers(1, 71)
            if label == "v2":
                _png(clip_dir / "labels_rgb" / f"{i}.png", palette[masks[i]])
            else:
                _png(clip_dir / "labels_semantic" / f"{i}.png", masks[i])
                _png(clip_dir / "labels_rgb" / f"{i}.png", palette[masks[i]])
        audio = tone(rng, frames_n)
        audio = _wav(clip_dir / "audio.wav", audio)
        # JPEG frames: the truth is what a decoder reads back from them
        frames = np.stack([np.asarray(Image.open(clip_dir / "frames" / f"{i}.jpg")) for i in range(frames_n)])
        ids = sorted({int(c) for c in np.unique(masks) if c})
        expected[f"{label}/{uid}"] = Expected(split, masks, annotated, frames, audio, ids)
    _csv(root / "metadata.csv", ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"],
         [[f"yt_{uid}", uid, "0", "0", "x", split, label] for label, uid, split, _ in clips])
    return expected


def write_vpo(root: Path, subset: str = "ss", seed: int = 3) -> dict[str, Expected]:
    """VPO: COCO-named images, one mask per instance, VGGSound wavs in audio/, `val` used as test."""
    rng = np.random.default_rng(seed)
    base = root / "VPO" / f"VPO-{subset.upper()}"
    rows = [("dog", 139, [101, 102], 18, "dogbark_000", "train"), ("cat", 285, [7], 17, "meow_001", "val")]
    expected = {}
    for index, (name, img_id, anns, cate_id, wav, split) in enumerate(rows):
        image = smooth_frame(rng)
        Image.fromarray(image).save(_mkdir(base / "data") / f"{img_id:012d}.jpg", quality=95)
        union = np.zeros((SIZE, SIZE), np.uint8)
        for ann in anns:
            instance = blob_mask(rng)
            _png(base / "mask" / f"{img_id}_{ann}.png", instance * 255)
            union |= instance
        audio = tone(rng, 3.0)
        audio = _wav(root / "audio" / f"{wav}.wav", audio)
        decoded = np.asarray(Image.open(base / "data" / f"{img_id:012d}.jpg"))[None]
        category = 1 + ["airplane", "baby", "bird", "bus", "car", "cat", "cell phone", "cow", "dog"].index(name)
        expected[f"vpo_{subset}/{index:06d}_{img_id}"] = Expected(
            "test" if split == "val" else split, union[None], [True], decoded, audio, [category])
    _csv(root / f"vpo_{subset}_data_mono.csv", ["cateName", "img_Id", "ann_Ids", "cateId", "vgg_file", "split"],
         [[n, str(i), str(a), str(c), w, s] for n, i, a, c, w, s in rows])
    return expected


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
