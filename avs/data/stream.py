"""Ray Data input: read the Parquet shards, decode and augment clips in Ray Data, batch for workers.

Decoding (JPEG/PNG) and augmentation run in Ray Data's `map_batches` tasks, streamed to each
Ray Train worker with `get_dataset_shard(...).iter_torch_batches(...)` (collated by
`avs.data.collate.CollateClips`); the training loop only moves ready tensors to its device. The
same code reads local folders and `s3://` URIs. Ray is imported only where a Dataset is built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from avs.config import AugmentConfig
from avs.data.audio import add_white_noise
from avs.data.errors import DataError
from avs.data.preprocess import MANIFEST, read_manifest
from avs.data.shards import SCHEMA, check_schema_version, decode_row


class DecodeClips:
    """`map_batches` callable: shard rows -> decoded, augmented (train) or resized (eval) arrays.

    Every frame and mask of a clip gets the same crop and flip (masks with nearest
    interpolation); colour jitter touches frames only; with `audio_noise_p` a clip's audio gets
    white noise at a random SNR. Clips shorter than `num_frames` are padded with unlabelled
    blank frames so that batches stack.
    """

    def __init__(self, *, image_size: int, num_frames: int, augment: AugmentConfig | None):
        self.num_frames = num_frames
        self.augment = augment
        if augment is None:
            self.transform = v2.Resize((image_size, image_size), antialias=True)
        else:
            steps = [v2.RandomResizedCrop((image_size, image_size), scale=(augment.crop_scale_min, augment.crop_scale_max), antialias=True)]
            if augment.horizontal_flip:
                steps.append(v2.RandomHorizontalFlip())
            if augment.color_jitter > 0:
                steps.append(v2.ColorJitter(augment.color_jitter, augment.color_jitter, augment.color_jitter))
            self.transform = v2.Compose(steps)

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        columns: dict[str, list] = {k: [] for k in ("frames", "audio", "masks", "labelled", "sounding", "padded", "visible", "has_visible", "subset", "clip_id")}
        rng = np.random.default_rng()  # fresh entropy per call: this object is pickled into every task
        for row in batch.to_pylist():
            clip = decode_row(row)
            video = tv_tensors.Video(torch.from_numpy(clip.frames).permute(0, 3, 1, 2))  # (T, 3, H, W)
            masks = tv_tensors.Mask(torch.from_numpy(clip.masks))  # (T, H, W)
            has_visible = clip.visible_masks is not None
            visible = tv_tensors.Mask(torch.from_numpy(clip.visible_masks) if has_visible else torch.zeros_like(masks))
            video, masks, visible = self.transform(video, masks, visible)
            pad = self.num_frames - video.shape[0]
            if pad < 0:
                raise ValueError(f"clip {clip.clip_id} has {video.shape[0]} frames, more than the {self.num_frames} expected")
            columns["frames"].append(_pad(video.numpy(), pad))
            columns["masks"].append(_pad(masks.numpy(), pad))
            columns["visible"].append(_pad(visible.numpy(), pad))
            windows_per_frame = clip.audio.shape[0] // video.shape[0]  # 1, or k (VPO: 3 s, 2 channels)
            columns["audio"].append(_pad(self._noisy(clip.audio, rng), pad * windows_per_frame))
            columns["labelled"].append(_pad(clip.mask_annotated, pad))
            columns["sounding"].append(_pad(clip.sounding, pad))
            columns["padded"].append(np.arange(self.num_frames) >= video.shape[0])
            columns["has_visible"].append(has_visible)
            columns["subset"].append(clip.subset)
            columns["clip_id"].append(clip.clip_id)
        return {k: np.stack(v) if k not in ("subset", "clip_id") else np.asarray(v, dtype=object) for k, v in columns.items()}

    def _noisy(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T, samples) -> with white noise at a random SNR, with chance `audio_noise_p` (training only)."""
        if self.augment is None or self.augment.audio_noise_p == 0 or rng.random() >= self.augment.audio_noise_p:
            return audio
        return add_white_noise(audio, rng.uniform(*self.augment.audio_noise_snr_db), rng)


def _pad(array: np.ndarray, count: int) -> np.ndarray:
    if count == 0:
        return array
    return np.concatenate([array, np.zeros((count, *array.shape[1:]), array.dtype)])


def shard_files(shards_dir: str | Path, split: str) -> list[str]:
    """The Parquet files of one split, from the folder's manifest.json (of this code's schema version)."""
    shards_dir = Path(shards_dir)
    manifest = read_manifest(shards_dir)
    check_schema_version(manifest.get("schema_version"), shards_dir / MANIFEST)
    splits = manifest["splits"]
    if split not in splits or not splits[split]["shards"]:
        raise DataError(shards_dir / MANIFEST, f"no clips in split '{split}' (splits: {', '.join(splits) or 'none'})")
    return [str((shards_dir / shard["path"]).resolve()) for shard in splits[split]["shards"]]


def max_frames(files: list[str]) -> int:
    """The longest clip (T) among the shard files, read from the `num_frames` column only."""
    import pyarrow.parquet as pq

    return max(pq.read_table(f, columns=["num_frames"])["num_frames"].to_numpy().max() for f in files)


def read_clips(files: list[str], *, image_size: int, num_frames: int, augment: AugmentConfig | None,
               shuffle_seed: int | None = None, with_visible: bool = True, batch_rows: int = 8):
    """A Ray Dataset of decoded clips (augmented when `augment` is given, else only resized).

    `shuffle_seed` reads the shard files in a new order on every pass (epoch), seeded; the
    training loop then draws batches at random from a local buffer (`iter_clip_batches`). This
    replaces a global `random_shuffle`, which materialised every undecoded row in Ray's object
    store each epoch. None keeps the shards' order. `with_visible=False` leaves the visible-object
    masks unread (training does not use them; the audio-blind reference is computed on validation).
    """
    decode = DecodeClips(image_size=image_size, num_frames=num_frames, augment=augment)
    clips = read_shard_rows(files, shuffle_seed)
    if not with_visible:  # projected away before the read (Ray Data pushes the selection down)
        clips = clips.select_columns([name for name in SCHEMA.names if name != "visible_masks"])
    return clips.map_batches(decode, batch_size=batch_rows, batch_format="pyarrow")


CLIPS_PER_BLOCK = 64  # rows per Ray Data block: enough blocks to decode in parallel, few enough that tasks stay cheap


def read_shard_rows(files: list[str], shuffle_seed: int | None = None):
    """`ray.data.read_parquet` in about one block per `CLIPS_PER_BLOCK` clips (at least one per file).

    Ray 2.60's default Parquet reader (DataSource V2) packs up to 128 MiB of row groups into
    one read task and ignores `override_num_blocks`, so a small dataset comes out as a single
    block decoded by one task on one core, and every pass first starts footer-reading actors.
    The V1 reader, still selectable through `DataContext.use_datasource_v2`, reads the files in
    parallel into the blocks asked for (benchmarks/data_throughput.py measures the data path).
    """
    import pyarrow.parquet as pq
    import ray.data

    rows = sum(pq.read_metadata(f).num_rows if "://" not in f else pq.read_table(f, columns=["clip_id"]).num_rows
               for f in files)
    context = ray.data.DataContext.get_current()
    default_reader = context.use_datasource_v2
    context.use_datasource_v2 = False  # read at planning time only: restored before anything runs
    try:
        shuffle = None if shuffle_seed is None else ray.data.FileShuffleConfig(seed=shuffle_seed, reseed_after_execution=True)
        return ray.data.read_parquet(
            files, override_num_blocks=max(len(files), -(-rows // CLIPS_PER_BLOCK)), shuffle=shuffle
        )
    finally:
        context.use_datasource_v2 = default_reader
