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
    image[top : top + size // 3, left : left + size // 3] = rng.uniform(0, 255, 3)
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


S4_CLIPS = [("clipA", "dog", "train"), ("clipB", "baby", "val"), ("clipC", "dog", "test")]


def write_s4(root: Path, seed: int = 0, clips: list[tuple[str, str, str]] = S4_CLIPS) -> dict[str, Expected]:
    """AVSBench S4: train annotates only frame 1; val/test all 5. `clips`: (name, category, split)."""
    rng = np.random.default_rng(seed)
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
    _csv(root / "s4_meta_data.csv", ["name", "start_time", "category", "split"], [[n, "0", c, s] for n, c, s in clips])
    return expected


MS3_CLIPS = [("vid001", "train", False), ("vid002", "test", True)]


def write_ms3(root: Path, seed: int = 1, clips: list[tuple[str, str, bool]] = MS3_CLIPS) -> dict[str, Expected]:
    """AVSBench MS3: flat frames (`{vid}.mp4_{i}.png`), one clip nested in `{vid}/`, empty masks allowed.
    `clips`: (video id, split, nested)."""
    rng = np.random.default_rng(seed)
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


AVSS_CLIPS = [("v1s", "uidS", "train", 5), ("v1m", "uidM", "val", 5), ("v2", "uidV", "test", 10)]


def write_avss(root: Path, seed: int = 2, clips: list[tuple[str, str, str, int]] = AVSS_CLIPS) -> dict[str, Expected]:
    """AVSBench-semantic: v1s train (frame 0 labelled), v1m with labels_semantic, v2 (10 frames) with
    labels_rgb only. `clips`: (label, uid, split, frames)."""
    rng = np.random.default_rng(seed)
    (root).mkdir(parents=True, exist_ok=True)
    # As released: ids 1..71 with background = 1 (the palette index is the id minus 1).
    (root / "label2idx.json").write_text(json.dumps({n: i for i, n in enumerate(AVSS_NAMES, start=1)}))
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
    _csv(
        root / "metadata.csv",
        ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"],
        [[f"yt_{uid}", uid, "0", "0", "x", split, label] for label, uid, split, _ in clips],
    )
    return expected


VPO_CLASSES = [
    "airplane",
    "baby",
    "bird",
    "bus",
    "car",
    "cat",
    "cell phone",
    "cow",
    "dog",
    "elephant",
    "female",
    "horse",
    "keyboard",
    "male",
    "motorcycle",
    "mouse",
    "sheep",
    "skateboard",
    "sports ball",
    "tennis racket",
    "zebra",
]
# (cateName, COCO-style cateId) as the release's CSVs pair them
VPO_IDS = {"dog": 18, "cat": 17, "male": 92, "female": 93, "car": 3, "horse": 19}
# subset -> images: (img_Id, split, [(cateName, ann_Id, vgg_file, audio_pos, multi_instance)])
VPO_IMAGES = {
    "ss": [
        (139, "train", [("dog", 101, "dog_a", 0.3, None)]),
        (285, "val", [("cat", 7, "cat_a", 0.7, None)]),
        (632, "train", [("dog", 55, "dog_b", 0.5, None)]),
        (724, "train", [("horse", 9, "horse_a", 0.2, None)]),
        (776, "train", [("cat", 12, "cat_b", 0.9, None)]),
        (801, "val", [("horse", 31, "horse_b", 0.4, None)]),
    ],
    "ms": [
        (1001, "train", [("male", 5, "male_a", 0.2, None), ("dog", 6, "dog_a", 0.8, None)]),
        (1002, "train", [("car", 8, "car_a", 0.5, None)]),
        (1003, "val", [("female", 3, "female_a", 0.1, None), ("male", 4, "male_b", 0.6, None)]),
        (1004, "train", [("cat", 2, "cat_a", 0.5, None)]),
        (1005, "train", [("horse", 1, "horse_a", 0.4, None)]),
        (1006, "val", [("dog", 7, "dog_b", 0.3, None)]),
    ],
    "msmi": [
        (2001, "train", [("male", 5, "male_a", 0.2, 1), ("male", 6, "male_b", 0.8, 1)]),
        (2002, "train", [("dog", 8, "dog_a", 0.5, 0)]),  # single-instance: its files are in VPO-MS
        (2003, "val", [("female", 3, "female_a", 0.1, 1), ("car", 4, "car_a", 0.6, 1)]),
        (2004, "train", [("cat", 2, "cat_a", 0.5, 0)]),
        (2005, "train", [("horse", 1, "horse_a", 0.4, 1)]),
        (2006, "val", [("horse", 9, "horse_b", 0.7, 0)]),
    ],
}
VPO_WAV_SECONDS = 10.0


def write_vpo(
    root: Path, subset: str = "ss", seed: int = 3, stereo: bool = False, semantic: bool = False
) -> dict[str, Expected]:
    """VPO as cyh-0/CAVP reads it: the `_stereo` CSV in VPO/VPO-{SUB}/, JPEGs and masks of
    COCO category ids (255 on a border ring) named `{img:012d}[_{ann:012d}]`, per class in
    VPO-SS, MSMI's single-instance rows in VPO-MS, 10 s wavs in VGGSound/audios/. Expected: one
    sample per image, the union of its instances, the sum of its rows' centred 3 s windows."""
    rng = np.random.default_rng(seed)
    base = root / "VPO" / f"VPO-{subset.upper()}"
    header = ["cateName", "img_Id", "ann_Ids", "cateId", "vgg_file", "split", "audio_pos"]
    header += ["multi_instance"] if subset == "msmi" else []
    rows, expected, waves = [], {}, {}
    for img_id, split, sources in VPO_IMAGES[subset]:
        image = smooth_frame(rng)
        truth = np.zeros((SIZE, SIZE), np.uint8)
        left, right = np.zeros(3 * RATE, np.float32), np.zeros(3 * RATE, np.float32)
        for name, ann, wav, pos, multi in sources:
            folder = root / "VPO" / "VPO-MS" if multi == 0 else base
            data_dir, mask_dir = folder / "data", folder / "mask"
            if subset == "ss":
                data_dir, mask_dir = data_dir / name, mask_dir / name
            Image.fromarray(image).save(_mkdir(data_dir) / f"{img_id:012d}.jpg", quality=95)
            instance = blob_mask(rng)
            ring = (
                np.maximum.reduce([np.roll(instance, shift, axis) for shift in (-1, 1) for axis in (0, 1)]) > instance
            )
            stored = instance * VPO_IDS[name]
            stored[ring] = 255
            _png(mask_dir / f"{img_id:012d}_{ann:012d}.png", stored.astype(np.uint8))
            label = 1 + VPO_CLASSES.index(name) if semantic else 1
            truth[instance == 1] = np.maximum(truth[instance == 1], label)
            if wav not in waves:
                waves[wav] = _wav(root / "VGGSound" / "audios" / f"{wav}.wav", tone(rng, VPO_WAV_SECONDS))
            middle = len(waves[wav]) // 2
            window = waves[wav][middle - 3 * RATE // 2 : middle - 3 * RATE // 2 + 3 * RATE]
            left += window * ((1 - pos) if stereo else 1)
            right += window * pos
            rows.append(
                [name, str(img_id), str(ann), str(VPO_IDS[name]), wav, split, str(pos)]
                + ([str(multi)] if subset == "msmi" else [])
            )
        audio = np.concatenate([left, right]) if stereo else left
        decoded = np.asarray(Image.open(next(root.glob(f"VPO/*/data/**/{img_id:012d}.jpg"))))[None]
        ids = sorted({1 + VPO_CLASSES.index(n) for n, *_ in sources})
        expected[f"vpo_{subset}/{img_id:012d}"] = Expected(
            "test" if split == "val" else split, truth[None], [True], decoded, audio.reshape(-1, RATE), ids
        )
    base.mkdir(parents=True, exist_ok=True)
    _csv(base / f"vpo_{subset}_data_stereo.csv", header, rows)
    return expected


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
