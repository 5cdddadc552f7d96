"""Each real layout round-trips: fixture -> adapter -> Parquet shards -> decoded arrays."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from avs.config import DataConfig, PreprocessConfig
from avs.data.audio import split_seconds
from avs.data.preprocess import preprocess_source
from avs.data.shards import decode_row
from avs.data.sources import open_source
from tests import layouts

JPEG_TOLERANCE = 4.0  # mean absolute difference, grey levels


def _round_trip(source, tmp_path: Path) -> dict:
    cfg = PreprocessConfig(image_size=None, jpeg_quality=95, num_workers=1)
    manifest = preprocess_source(source, tmp_path / "shards", cfg, progress=False)
    decoded = {}
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            for row in pq.read_table(tmp_path / "shards" / shard["path"]).to_pylist():
                assert row["split"] == split
                decoded[row["clip_id"]] = decode_row(row)
    return decoded


def _check(decoded, expected, seconds_offset: float = 0.0):
    assert sorted(decoded) == sorted(expected)
    for clip_id, truth in expected.items():
        clip = decoded[clip_id]
        assert clip.split == truth.split, clip_id
        np.testing.assert_array_equal(clip.masks, truth.masks, err_msg=clip_id)  # bit-exact
        foreground = [int((m != 0).sum()) for m in truth.masks]
        assert [int((m != 0).sum()) for m in clip.masks] == foreground, clip_id
        assert sum(foreground) > 0, f"{clip_id}: the fixture itself has no foreground"
        assert clip.mask_annotated.tolist() == truth.annotated, clip_id
        assert clip.frames.shape == truth.frames.shape
        error = np.abs(clip.frames.astype(float) - truth.frames.astype(float)).mean()
        assert error < JPEG_TOLERANCE, (clip_id, error)
        start = int(seconds_offset * 16000)
        audio = split_seconds(truth.audio[start:], len(truth.annotated), clip_id)
        np.testing.assert_allclose(clip.audio, audio, atol=1 / 32768)  # 16-bit PCM
        if truth.category_ids:
            assert clip.category_ids == truth.category_ids, clip_id


def test_avsbench_s4(tmp_path):
    expected = layouts.write_s4(tmp_path / "AVSBench")
    source = open_source(DataConfig(dataset="avsbench_s4", root="x"), tmp_path / "AVSBench")
    decoded = _round_trip(source, tmp_path)
    _check(decoded, expected)
    train = decoded["s4/clipA"]
    assert train.mask_annotated.tolist() == [True, False, False, False, False]
    assert train.sounding.all()  # S4: the single source sounds throughout
    assert source.categories == {"background": 0, "baby": 1, "dog": 2}
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert [(c["clip_id"], c["shortfall_s"]) for c in manifest["padded_audio"]] == [("s4/clipB", 0.15)]
    assert not decoded["s4/clipB"].audio[-1, -2400:].any()  # the last 0.15 s is silence


def test_audio_short_beyond_the_limit_is_a_clear_error(tmp_path):
    import soundfile

    from avs.data.errors import DataError

    layouts.write_s4(tmp_path / "AVSBench")
    wav = tmp_path / "AVSBench/s4_data/audio_wav/test/dog/clipC.wav"
    soundfile.write(wav, layouts.tone(np.random.default_rng(0), 3.5), 16000, subtype="PCM_16")
    source = open_source(DataConfig(dataset="avsbench_s4", root="x"), tmp_path / "AVSBench")
    cfg = PreprocessConfig(image_size=None, num_workers=1)
    with pytest.raises(DataError, match=r"clipC.wav: audio is 3.50 s long; 5 s are needed \(at most 1 s short"):
        preprocess_source(source, tmp_path / "shards", cfg, progress=False)
    assert not (tmp_path / "shards").exists()
    loose = PreprocessConfig(image_size=None, num_workers=1, max_audio_shortfall_s=1.5)
    manifest = preprocess_source(source, tmp_path / "shards", loose, progress=False)
    assert {c["clip_id"]: c["shortfall_s"] for c in manifest["padded_audio"]} == {"s4/clipB": 0.15, "s4/clipC": 1.5}


def test_avsbench_ms3_flat_and_nested_frames(tmp_path):
    expected = layouts.write_ms3(tmp_path / "AVSBench")
    source = open_source(DataConfig(dataset="avsbench_ms3", root="x"), tmp_path / "AVSBench")
    decoded = _round_trip(source, tmp_path)
    _check(decoded, expected)
    for clip in decoded.values():  # the silent second has an empty mask and is not sounding
        assert clip.sounding.tolist() == [True, True, False, True, True]


def test_avss_semantic_and_palette_masks(tmp_path):
    expected = layouts.write_avss(tmp_path / "AVSS")
    source = open_source(DataConfig(dataset="avss", root="x"), tmp_path / "AVSS")
    assert source.num_classes == 71 and source.label_kind == "semantic"
    decoded = _round_trip(source, tmp_path)
    _check(decoded, expected)
    assert decoded["v2/uidV"].frames.shape[0] == 10
    assert decoded["v1s/uidS"].mask_annotated.tolist() == [True, False, False, False, False]
    assert source.categories["background"] == 0 and source.categories["class_70"] == 70


def test_avss_label_map_numbering(tmp_path):
    import json

    from avs.data.errors import DataError

    layouts.write_avss(tmp_path / "AVSS")
    label_map = tmp_path / "AVSS" / "label2idx.json"
    cfg = DataConfig(dataset="avss", root="x")
    label_map.write_text(json.dumps({n: i for i, n in enumerate(layouts.AVSS_NAMES)}))  # a 0-based copy
    assert open_source(cfg, tmp_path / "AVSS").categories["class_01"] == 1
    label_map.write_text(json.dumps({n: i for i, n in enumerate(layouts.AVSS_NAMES, start=2)}))
    with pytest.raises(DataError, match=r"label2idx.json: expected 71 classes numbered 1..71 .*found 71 entries "
                                        r"with ids 2..72"):
        open_source(cfg, tmp_path / "AVSS")
    label_map.write_text(json.dumps({n: min(i, 70) for i, n in enumerate(layouts.AVSS_NAMES, start=1)}))
    with pytest.raises(DataError, match=r"id 70 used more than once"):
        open_source(cfg, tmp_path / "AVSS")


@pytest.mark.parametrize("subset", ["ss", "msmi"])
def test_vpo_union_of_instances(tmp_path, subset):
    expected = layouts.write_vpo(tmp_path / "VPO_root", subset)
    cfg = DataConfig(dataset=f"vpo_{subset}", root="x")
    source = open_source(cfg, tmp_path / "VPO_root")
    decoded = _round_trip(source, tmp_path)
    _check(decoded, expected, seconds_offset=1.0)  # the middle second of the 3 s VGGSound clip


def test_missing_layout_is_a_clear_error(tmp_path):
    from avs.data.errors import DataError

    with pytest.raises(DataError, match=r"s4_data: folder not found: expected the S4 data folder"):
        open_source(DataConfig(dataset="avsbench_s4", root="x"), tmp_path)
    with pytest.raises(DataError, match=r"label2idx.json: label map not found"):
        open_source(DataConfig(dataset="avss", root="x"), tmp_path)
    with pytest.raises(DataError, match=r"VGGSound wav folder"):
        (tmp_path / "VPO" / "VPO-SS").mkdir(parents=True)
        open_source(DataConfig(dataset="vpo_ss", root="x"), tmp_path)
