"""Bad input gives a clear error naming the file; `on_error: skip` drops only that clip."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
from PIL import Image

from avs.config import DataConfig, PreprocessConfig
from avs.data.errors import DataError
from avs.data.media import write_clip_video
from avs.data.preprocess import preprocess_source, read_manifest
from avs.data.sources import open_source
from tests import layouts

MS3 = DataConfig(dataset="avsbench_ms3", root="x")


def _ms3_with_video(root: Path) -> Path:
    """The MS3 fixture with clip vid001 stored as an mp4 (frames + AAC) instead of PNGs + wav."""
    expected = layouts.write_ms3(root)
    truth = expected["ms3/vid001"]
    for png in (root / "ms3_data/visual_frames").glob("vid001.mp4_*.png"):
        png.unlink()
    (root / "ms3_data/audio_wav/train/vid001.wav").unlink()
    video = root / "ms3_data/raw_videos/vid001.mp4"
    video.parent.mkdir(parents=True)
    write_clip_video(video, truth.frames, truth.audio, fps=4)
    return video


def _write_video_without_audio(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width = stream.height = 48
        stream.pix_fmt = "yuv420p"
        for _ in range(20):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 48, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode())


def _run(root: Path, out: Path, on_error: str = "raise") -> dict:
    cfg = PreprocessConfig(image_size=None, num_workers=1, on_error=on_error)
    return preprocess_source(open_source(MS3, root), out, cfg, progress=False)


def test_video_clip_decodes(tmp_path):
    from avs.data.clip import load_clip

    truth = layouts.write_ms3(tmp_path / "truth")["ms3/vid001"]
    _ms3_with_video(tmp_path)
    (ref,) = [c for c in open_source(MS3, tmp_path).clips if c.clip_id == "ms3/vid001"]
    clip = load_clip(ref)
    assert np.abs(clip.frames.astype(float) - truth.frames).mean() < 6.0  # H.264 at crf 17
    written = truth.audio[: 5 * 16000].reshape(5, -1)
    # AAC is lossy but aligned: per-second energy matches (the encoder's priming is trimmed)
    np.testing.assert_allclose(np.sqrt((clip.audio**2).mean(1)), np.sqrt((written**2).mean(1)), rtol=0.05)
    manifest = _run(tmp_path, tmp_path / "out")
    assert manifest["clips"] == 2 and not manifest["skipped"]


def _corrupt(video: Path) -> None:
    video.write_bytes(b"not a video" * 100)


def _truncate(video: Path) -> None:
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_corrupt, "cannot open video (corrupt or truncated?)"),
        (_truncate, "cannot open video (corrupt or truncated?)"),
        (_write_video_without_audio, "video has no audio track"),
    ],
)
def test_damaged_video(tmp_path, damage, message):
    video = _ms3_with_video(tmp_path)
    damage(video)
    with pytest.raises(DataError) as err:
        _run(tmp_path, tmp_path / "out")
    assert err.value.path == str(video) and message in err.value.reason


def test_silent_audio(tmp_path):
    layouts.write_ms3(tmp_path)
    wav = tmp_path / "ms3_data/audio_wav/test/vid002.wav"
    soundfile.write(wav, np.zeros(5 * 16000, np.float32), 16000)
    with pytest.raises(DataError, match=r"vid002.wav: audio track is silent throughout"):
        _run(tmp_path, tmp_path / "out")


def test_mask_size_differs_from_frame(tmp_path):
    layouts.write_ms3(tmp_path)
    mask = tmp_path / "ms3_data/gt_masks/test/vid002/vid002_3.png"
    Image.fromarray(np.zeros((40, 44), np.uint8)).save(mask)
    with pytest.raises(DataError, match=r"vid002_3.png: mask is 44x40 but its frame is 48x48"):
        _run(tmp_path, tmp_path / "out")


def test_csv_row_naming_a_missing_file(tmp_path):
    layouts.write_ms3(tmp_path)
    (tmp_path / "ms3_data/gt_masks/train/vid001/vid001_4.png").unlink()
    with pytest.raises(DataError, match=r"vid001_4.png: file not found \(named by ms3_meta_data.csv line 2\)"):
        _run(tmp_path, tmp_path / "out")


def test_skip_lists_the_clip_and_keeps_the_rest(tmp_path):
    layouts.write_ms3(tmp_path)
    (tmp_path / "ms3_data/gt_masks/train/vid001/vid001_4.png").unlink()
    manifest = _run(tmp_path, tmp_path / "out", on_error="skip")
    assert manifest["clips"] == 1
    (skipped,) = manifest["skipped"]
    assert skipped["clip_id"] == "ms3/vid001" and skipped["file"].endswith("vid001_4.png")
    assert "file not found" in skipped["reason"]
    assert read_manifest(tmp_path / "out") == manifest
    rows = pq.read_table(tmp_path / "out" / manifest["splits"]["test"]["shards"][0]["path"]).to_pylist()
    assert [r["clip_id"] for r in rows] == ["ms3/vid002"]


def test_failure_leaves_previous_shards_untouched(tmp_path):
    layouts.write_ms3(tmp_path)
    out = tmp_path / "out"
    _run(tmp_path, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    shutil.rmtree(tmp_path / "ms3_data/gt_masks/test")
    with pytest.raises(DataError):
        _run(tmp_path, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial output


def test_unknown_schema_version_is_refused(tmp_path):
    from avs.data.shards import SCHEMA_KEY, check_schema_version

    layouts.write_ms3(tmp_path)
    manifest = _run(tmp_path, tmp_path / "out")
    shard = tmp_path / "out" / manifest["splits"]["train"]["shards"][0]["path"]
    check_schema_version(pq.read_schema(shard).metadata.get(SCHEMA_KEY), str(shard))
    with pytest.raises(ValueError, match="shard schema version 99"):
        check_schema_version(b"99", str(shard))
    with pytest.raises(ValueError, match="shard schema version missing"):
        check_schema_version(None, str(shard))
