"""The Parquet shard format: schema, encoding of a clip into a row, and decoding back.

One row per clip. Shards live in `data/shards/<dataset>/<split>/part-NNNNN.parquet` beside a
`manifest.json`. The schema is versioned (`SCHEMA_VERSION`, also stored in each file's metadata);
a reader refuses a version it does not know instead of misreading it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from avs.data.audio import from_pcm16, to_pcm16
from avs.data.clip import Clip
from avs.data.errors import DataError
from avs.data.media import SAMPLE_RATE

SCHEMA_VERSION = 2  # 2: 16-bit PCM audio instead of VGGish log-mel patches
SCHEMA_KEY = b"avs.schema_version"

SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("subset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),  # T
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("category_ids", pa.list_(pa.int32()), nullable=False),  # sounding categories
        pa.field("frames", pa.list_(pa.binary()), nullable=False),  # T JPEGs
        pa.field("masks", pa.list_(pa.binary()), nullable=False),  # T PNGs of class ids; null = not annotated
        pa.field("mask_annotated", pa.list_(pa.bool_()), nullable=False),  # (T,)
        pa.field("sounding", pa.list_(pa.bool_()), nullable=False),  # (T,)
        pa.field("visible_masks", pa.list_(pa.binary()), nullable=True),  # T PNGs 0/1, or null
        # T seconds of 16 kHz int16 PCM, or k T one-second windows (VPO: its 3 s window, per channel)
        pa.field("audio", pa.list_(pa.binary(2 * SAMPLE_RATE)), nullable=False),
    ],
    metadata={SCHEMA_KEY: str(SCHEMA_VERSION).encode()},
)


@dataclass
class DecodedClip:
    """A shard row decoded to arrays."""

    clip_id: str
    subset: str
    split: str
    category_ids: list[int]
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) uint8 class ids; zeros where not annotated
    mask_annotated: np.ndarray  # (T,) bool
    sounding: np.ndarray  # (T,) bool
    visible_masks: np.ndarray | None  # (T, H, W) uint8 0/1
    audio: np.ndarray  # (k T, 16000) float32 waveform: second t of the audio (k = 1), or k windows per frame


def encode_clip(clip: Clip, dataset: str, image_size: int | None, jpeg_quality: int) -> dict[str, Any]:
    """A decoded clip as a shard row (frames resized bilinearly, masks by nearest neighbour)."""
    frames = [_resize(f, image_size, Image.Resampling.BILINEAR) for f in clip.frames]
    masks = [_resize(m, image_size, Image.Resampling.NEAREST) for m in clip.masks]
    height, width = frames[0].shape[:2]
    visible = None
    if clip.visible is not None:
        visible = [encode_png(_resize(v, image_size, Image.Resampling.NEAREST)) for v in clip.visible]
    ref = clip.ref
    return {
        "clip_id": ref.clip_id,
        "dataset": dataset,
        "subset": ref.subset,
        "split": ref.split,
        "num_frames": ref.num_frames,
        "height": height,
        "width": width,
        "category_ids": list(clip.category_ids),
        "frames": [encode_jpeg(f, jpeg_quality) for f in frames],
        "masks": [encode_png(m) if a else None for m, a in zip(masks, clip.annotated)],
        "mask_annotated": clip.annotated.tolist(),
        "sounding": clip.sounding.tolist(),
        "visible_masks": visible,
        "audio": to_pcm16(clip.audio),
    }


def decode_row(row: dict[str, Any]) -> DecodedClip:
    """A shard row (as from `pyarrow.Table.to_pylist()`) back to arrays."""
    frames = np.stack([decode_image(b) for b in row["frames"]])
    height, width = frames.shape[1:3]
    masks = np.stack([
        decode_image(b) if b is not None else np.zeros((height, width), np.uint8) for b in row["masks"]
    ])
    visible = None
    if row.get("visible_masks") is not None:
        visible = np.stack([decode_image(b) for b in row["visible_masks"]])
    return DecodedClip(
        clip_id=row["clip_id"],
        subset=row["subset"],
        split=row["split"],
        category_ids=list(row["category_ids"]),
        frames=frames,
        masks=masks,
        mask_annotated=np.asarray(row["mask_annotated"], bool),
        sounding=np.asarray(row["sounding"], bool),
        visible_masks=visible,
        audio=from_pcm16(row["audio"]),
    )


def check_schema_version(found: bytes | str | int | None, where: str | Path) -> None:
    """Refuse shards written with a schema this code does not read.

    Args:
        found: the version a shard file's metadata (`SCHEMA_KEY`) or a manifest states, or None.
        where: the file it was read from (named in the error).
    """
    if isinstance(found, bytes):
        found = found.decode()
    if found is None or str(found) != str(SCHEMA_VERSION):
        raise DataError(where, f"shard schema version {found if found is not None else 'missing'}, this code "
                               f"reads version {SCHEMA_VERSION}; re-run the preprocess stage")


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def _resize(array: np.ndarray, size: int | None, resample: Image.Resampling) -> np.ndarray:
    if size is None or array.shape[:2] == (size, size):
        return array
    return np.asarray(Image.fromarray(array).resize((size, size), resample))
