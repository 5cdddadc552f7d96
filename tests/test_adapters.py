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
        if truth.audio.ndim == 2:  # already the expected (S, 16000) windows
            audio = truth.audio
        else:
            start = int(seconds_offset * 16000)
            audio = split_seconds(truth.audio[start:], len(truth.annotated), clip_id)
        np.testing.assert_allclose(clip.audio, audio, atol=2 / 32768)  # 16-bit PCM, a sum of two at most
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
    with pytest.raises(
        DataError,
        match=r"label2idx.json: expected 71 classes numbered 1..71 .*found 71 entries "
        r"with ids 2..72",
    ):
        open_source(cfg, tmp_path / "AVSS")
    label_map.write_text(json.dumps({n: min(i, 70) for i, n in enumerate(layouts.AVSS_NAMES, start=1)}))
    with pytest.raises(DataError, match=r"id 70 used more than once"):
        open_source(cfg, tmp_path / "AVSS")


@pytest.mark.parametrize("subset", ["ss", "ms", "msmi"])
@pytest.mark.parametrize("stereo, semantic", [(False, False), (True, True)])
def test_vpo_as_cavp_reads_it(tmp_path, subset, stereo, semantic):
    expected = layouts.write_vpo(tmp_path / "VPO_root", subset, stereo=stereo, semantic=semantic)
    cfg = DataConfig(
        dataset=f"vpo_{subset}",
        root="x",
        vpo_val_fraction=0.0,
        vpo_audio="stereo" if stereo else "mono",
        vpo_labels="semantic" if semantic else "binary",
    )
    source = open_source(cfg, tmp_path / "VPO_root")
    assert (source.label_kind, source.num_classes) == (("semantic", 22) if semantic else ("binary", 2))
    decoded = _round_trip(source, tmp_path)
    _check(decoded, expected)  # one sample per image, the union of its instances, the rows' summed audio
    assert all(clip.audio.shape == (6 if stereo else 3, 16000) for clip in decoded.values())


def test_vpo_validation_split_is_carved_from_train_with_a_seed(tmp_path):
    expected = layouts.write_vpo(tmp_path / "VPO_root", "ss")
    splits = {}
    for seed in (0, 0, 1, 2, 3):
        cfg = DataConfig(dataset="vpo_ss", root="x", vpo_val_fraction=0.5, vpo_val_seed=seed)
        clips = open_source(cfg, tmp_path / "VPO_root").clips
        splits.setdefault(seed, []).append({c.clip_id: c.split for c in clips})
    assert splits[0][0] == splits[0][1]  # the same seed, the same split
    assert len({tuple(sorted(s[0].items())) for s in splits.values()}) > 1  # seeds differ
    for chosen in (runs[0] for runs in splits.values()):
        for clip_id, split in chosen.items():
            assert split == "test" if expected[clip_id].split == "test" else split in ("train", "val")
        assert sum(s == "val" for s in chosen.values()) == 2  # half of the 4 train images


def test_vpo_bad_input_names_the_file(tmp_path):
    from avs.data.clip import load_clip
    from avs.data.errors import DataError

    layouts.write_vpo(tmp_path / "VPO_root", "ms")
    csv_path = tmp_path / "VPO_root/VPO/VPO-MS/vpo_ms_data_stereo.csv"
    text = csv_path.read_text()
    cfg = DataConfig(dataset="vpo_ms", root="x", vpo_labels="semantic")
    csv_path.write_text(text.replace("1002,8,3,", "1002,8,4,"))  # car's cateId 3 -> 4: its mask says 3
    clip = next(c for c in open_source(cfg, tmp_path / "VPO_root").clips if c.clip_id.endswith("1002"))
    with pytest.raises(DataError, match=r"000000001002_000000000008.png: category id 3 is not among"):
        load_clip(clip)
    csv_path.write_text(text.replace("1003,3,93,female_a,val", "1003,3,93,female_a,train"))
    with pytest.raises(
        DataError,
        match=r"vpo_ms_data_stereo.csv: vpo_ms_data_stereo.csv line \d+: image 1003 "
        r"is listed in splits \['train', 'val'\]",
    ):
        open_source(cfg, tmp_path / "VPO_root")


def test_missing_layout_is_a_clear_error(tmp_path):
    from avs.data.errors import DataError

    with pytest.raises(DataError, match=r"s4_data: folder not found: expected the S4 data folder"):
        open_source(DataConfig(dataset="avsbench_s4", root="x"), tmp_path)
    with pytest.raises(DataError, match=r"label2idx.json: label map not found"):
        open_source(DataConfig(dataset="avss", root="x"), tmp_path)
    with pytest.raises(DataError, match=r"VPO/VPO-SS: folder not found: expected VPO/VPO-SS of the VPO release"):
        open_source(DataConfig(dataset="vpo_ss", root="x"), tmp_path)
    with pytest.raises(DataError, match=r"VGGSound: folder not found: expected the VGGSound folder"):
        (tmp_path / "VPO" / "VPO-SS").mkdir(parents=True)
        open_source(DataConfig(dataset="vpo_ss", root="x"), tmp_path)
