"""The Ray Data decode step: clip-consistent augmentation, padding, typed batches."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest
import torch

from avs.config import AugmentConfig, ConfigError
from avs.data.audio import add_white_noise, to_pcm16
from avs.data.batch import ClipBatch
from avs.data.collate import CollateClips, iter_clip_batches
from avs.data.errors import DataError
from avs.data.shards import SCHEMA, encode_jpeg, encode_png
from avs.data.stream import DecodeClips, shard_files


def synthetic_table(num_frames: int = 4, size: int = 96, visible: bool = True) -> pa.Table:
    """One clip whose frames show their own mask: white where the mask is 1, black elsewhere."""
    rng = np.random.default_rng(0)
    masks = np.zeros((num_frames, size, size), np.uint8)
    for t in range(num_frames):
        top, left = rng.integers(0, size // 2, 2)
        masks[t, top : top + size // 3, left : left + size // 4] = 1
    frames = np.repeat(masks[..., None] * 255, 3, axis=-1)
    row = {
        "clip_id": "c0",
        "dataset": "stamps",
        "subset": "ms3",
        "split": "train",
        "num_frames": num_frames,
        "height": size,
        "width": size,
        "category_ids": [1],
        "frames": [encode_jpeg(f, 95) for f in frames],
        "masks": [encode_png(m) for m in masks],
        "mask_annotated": [True] * num_frames,
        "sounding": [True] * num_frames,
        "visible_masks": [encode_png(m) for m in masks] if visible else None,
        "audio": to_pcm16(np.full((num_frames, 16000), 0.01, np.float32) * np.arange(num_frames)[:, None]),
    }
    return pa.Table.from_pylist([row], schema=SCHEMA)


@pytest.mark.parametrize("seed", range(5))
def test_augmentation_keeps_frames_and_masks_aligned(seed):
    torch.manual_seed(seed)
    decode = DecodeClips(image_size=48, num_frames=4, augment=AugmentConfig(crop_scale_min=0.3, color_jitter=0.0))
    out = decode(synthetic_table())
    frames, masks, visible = out["frames"][0], out["masks"][0], out["visible"][0]  # (T, 3, 48, 48), (T, 48, 48)
    assert frames.shape == (4, 3, 48, 48) and masks.shape == (4, 48, 48)
    bright = frames.mean(1) > 127
    # bilinear frames and nearest masks may differ along the edges only
    assert (bright == (masks == 1)).mean() > 0.97
    assert np.array_equal(masks, visible)
    assert set(np.unique(masks)) <= {0, 1}


def test_one_crop_and_flip_per_clip():
    table = synthetic_table()
    same = pa.Table.from_pylist(
        [
            {
                **table.to_pylist()[0],
                "frames": [table.to_pylist()[0]["frames"][0]] * 4,
                "masks": [table.to_pylist()[0]["masks"][0]] * 4,
            }
        ],
        schema=SCHEMA,
    )
    for seed in range(5):
        torch.manual_seed(seed)
        out = DecodeClips(image_size=48, num_frames=4, augment=AugmentConfig(crop_scale_min=0.2))(same)
        assert all(np.array_equal(out["masks"][0][0], m) for m in out["masks"][0])
        assert all(np.array_equal(out["frames"][0][0], f) for f in out["frames"][0])  # jitter: one draw per clip


def test_crops_cover_the_configured_share_of_the_frame():
    size = 96
    ramp = np.tile(np.linspace(0, 255, size).astype(np.uint8), (size, 1))  # each column's x, as brightness
    row = {**synthetic_table(size=size).to_pylist()[0]}
    row["frames"] = [encode_jpeg(np.repeat(ramp[..., None], 3, axis=-1), 100)] * 4
    table = pa.Table.from_pylist([row], schema=SCHEMA)
    for low, high, widths in ((0.25, 0.25, (0.40, 0.62)), (1.0, 1.0, (0.85, 1.0))):
        augment = AugmentConfig(crop_scale_min=low, crop_scale_max=high, horizontal_flip=False, color_jitter=0.0)
        for seed in range(5):
            torch.manual_seed(seed)
            x = DecodeClips(image_size=48, num_frames=4, augment=augment)(table)["frames"][0][0, 0].astype(float)
            span = (x[:, -1].mean() - x[:, 0].mean()) / 255  # the share of the frame's width the crop spans
            assert widths[0] <= span <= widths[1], (low, high, span)  # area 0.25: width sqrt(0.25 x 3/4 .. 4/3)
    with pytest.raises(ConfigError, match="crop_scale_min 0.8 is above crop_scale_max 0.5"):
        AugmentConfig(crop_scale_min=0.8, crop_scale_max=0.5)


def test_audio_noise_at_the_drawn_snr_fresh_each_time_and_only_when_asked():
    table = synthetic_table()
    clean = DecodeClips(image_size=48, num_frames=4, augment=None)(table)["audio"][0]
    quiet = DecodeClips(image_size=48, num_frames=4, augment=AugmentConfig(audio_noise_p=0.0))
    assert all(np.array_equal(quiet(table)["audio"][0], clean) for _ in range(20))
    noisy = DecodeClips(
        image_size=48, num_frames=4, augment=AugmentConfig(audio_noise_p=1.0, audio_noise_snr_db=(10.0, 10.0))
    )
    first, second = noisy(table)["audio"][0], noisy(table)["audio"][0]
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((first - clean).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)
    assert not np.array_equal(first, second)  # a new draw on every pass
    assert not add_white_noise(np.zeros((2, 100), np.float32), 0.0, np.random.default_rng(0)).any()  # silence stays
    with pytest.raises(ConfigError, match="audio_noise_snr_db"):
        AugmentConfig(audio_noise_snr_db=(20.0, 0.0))


def test_eval_resizes_pads_and_collates():
    out = DecodeClips(image_size=32, num_frames=6, augment=None)(synthetic_table(visible=False))
    batch = CollateClips()(out)
    assert isinstance(batch, ClipBatch)
    assert batch.frames.shape == (1, 6, 3, 32, 32) and batch.frames.dtype == torch.uint8
    assert batch.audio.shape == (1, 6, 16000) and batch.audio[0, 3, 0] == pytest.approx(0.03, abs=1e-4)
    assert not batch.audio[0, 4:].any()  # padding seconds are silent
    assert batch.labelled.tolist() == [[True] * 4 + [False] * 2]  # padding frames carry no label
    assert batch.has_visible.tolist() == [False] and batch.subset == ["ms3"]
    frames, _ = batch.model_inputs()
    assert frames.dtype == torch.float32 and frames.max() <= 1


def test_batches_from_read_only_arrays_are_writable_copies():
    columns = DecodeClips(image_size=32, num_frames=4, augment=None)(synthetic_table())
    for array in columns.values():
        array.flags.writeable = False  # as Ray Data's zero-copy views of its object store are
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch warns when it wraps a non-writable array
        batch = CollateClips()(columns)
    batch.masks[0, 0] = 7  # an in-place change stays in the batch's own memory
    assert batch.masks[0, 0].eq(7).all() and not (columns["masks"][0, 0] == 7).any()
    assert not np.shares_memory(batch.frames.numpy(), columns["frames"])


def test_missing_manifest_or_split_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="manifest.json: shard manifest not found: run the preprocess stage"):
        shard_files(tmp_path, "train")
    (tmp_path / "manifest.json").write_text('{"schema_version": 2, "splits": {"train": {"shards": []}}}')
    with pytest.raises(DataError, match="manifest.json: no clips in split 'val'"):
        shard_files(tmp_path, "val")
    (tmp_path / "manifest.json").write_text('{"schema_version": 1, "splits": {"train": {"shards": []}}}')
    with pytest.raises(
        DataError, match="manifest.json: shard schema version 1, this code reads version 2; re-run the preprocess"
    ):
        shard_files(tmp_path, "train")


def test_training_reads_no_visible_masks(tmp_path):
    import pyarrow.parquet as pq
    import ray

    from avs.data.stream import read_clips

    pq.write_table(synthetic_table(), tmp_path / "part.parquet")
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        for with_visible in (True, False):
            dataset = read_clips(
                [str(tmp_path / "part.parquet")], image_size=32, num_frames=4, augment=None, with_visible=with_visible
            )
            batch = next(iter(dataset.iter_torch_batches(batch_size=1, collate_fn=CollateClips())))
            assert batch.has_visible.tolist() == [with_visible]
            assert bool(batch.visible.any()) == with_visible
    finally:
        ray.shutdown()


def test_training_order_is_shuffled_anew_every_epoch(tmp_path):
    """Files of one subset each, the worst case: the file order and the local buffer still mix them."""
    import pyarrow.parquet as pq
    import ray

    from avs.data.stream import read_clips

    row = synthetic_table(num_frames=1, size=16).to_pylist()[0]
    files = []
    for part in range(2):  # as the preprocess stage writes them: one subset after the other
        rows = [{**row, "clip_id": f"{part}_{i:02d}", "subset": ("s4", "ms3")[part]} for i in range(24)]
        files.append(str(tmp_path / f"part-{part}.parquet"))
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), files[-1])
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        dataset = read_clips(files, image_size=16, num_frames=1, augment=None, shuffle_seed=0)
        first, second = (
            [c for b in iter_clip_batches(dataset, batch_size=8, shuffle_buffer=16, seed=epoch) for c in b.clip_id]
            for epoch in range(2)
        )  # two epochs
        grouped = sorted(first)
        assert sorted(second) == grouped and len(set(first)) == 48  # every clip once per epoch
        assert first != grouped and second != grouped and first != second
        assert any(c.startswith("1_") for c in first[:12])  # both subsets early in the epoch
    finally:
        ray.shutdown()


def test_shards_are_read_into_blocks_that_decode_in_parallel(tmp_path, monkeypatch):
    """Ray 2.60's default Parquet reader packed a split's files into one block, so one task
    decoded every clip on one core; each file, and each `CLIPS_PER_BLOCK` clips, is a block."""
    import pyarrow.parquet as pq
    import ray

    from avs.data import stream

    monkeypatch.setattr(stream, "CLIPS_PER_BLOCK", 8)
    row = synthetic_table(num_frames=1, size=16).to_pylist()[0]
    files = []
    for part, count in enumerate((24, 4)):
        files.append(str(tmp_path / f"part-{part}.parquet"))
        pq.write_table(
            pa.Table.from_pylist([{**row, "clip_id": f"{part}_{i:02d}"} for i in range(count)], schema=SCHEMA),
            files[-1],
        )
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        default_reader = ray.data.DataContext.get_current().use_datasource_v2
        assert stream.read_shard_rows(files).materialize().num_blocks() == 4  # 28 clips, 8 per block
        dataset = stream.read_clips(files, image_size=16, num_frames=1, augment=None).materialize()
        assert dataset.num_blocks() >= 2  # decoded by more than one task
        assert sorted(dataset.unique("clip_id")) == sorted(f"0_{i:02d}" for i in range(24)) + [
            f"1_{i:02d}" for i in range(4)
        ]
        assert (
            ray.data.DataContext.get_current().use_datasource_v2 == default_reader
        )  # the choice of reader does not leak
    finally:
        ray.shutdown()


def test_shards_publish_once_to_a_shared_mount(stamps_repo, tmp_path):
    from pathlib import Path

    from avs.data.preprocess import read_manifest
    from avs.data.publish import publish_shards, published_files

    shards = stamps_repo / "data" / "shards" / "stamps"
    location = publish_shards(shards, str(tmp_path / "mount"))
    manifest = read_manifest(shards)
    files = published_files(location, manifest, "train")
    assert files and all(Path(f).read_bytes() == (shards / Path(f).relative_to(location)).read_bytes() for f in files)
    assert (Path(location) / "manifest.json").is_file()
    assert publish_shards(shards, str(tmp_path / "mount")) == location  # complete: not copied again
