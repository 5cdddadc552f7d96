"""The embedded dataset: real material, deterministic, labels that agree with the audio."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from avs.data.clip import load_clip
from avs.data.sources.stamps import load_stamps_source
from avs.data.stamps.assets import (
    LOOKALIKE_GROUPS,
    STAMPS_SUBDIR,
    Stamp,
    find_deb,
    load_stamps,
    same_recordings,
    unpack_deb,
)
from avs.data.stamps.build import build_stamps
from tests.conftest import REPO, small_stamps_config

SOUNDING_DBFS = -35.0  # sounding seconds are mixed at -20 dBFS, silent ones hold -50 dBFS noise


def _dbfs(second: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(second, dtype=np.float64))) + 1e-12)


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern))}


@pytest.fixture(scope="module")
def package_stamps() -> list[Stamp]:
    """Every stamp of the downloaded package (needs the .deb that `make setup` downloads)."""
    return load_stamps(unpack_deb(find_deb(REPO / ".cache/debs"), REPO / ".cache/tuxpaint-stamps") / STAMPS_SUBDIR)


def test_only_photo_cutouts_with_their_own_recording(package_stamps):
    stamps = package_stamps
    names = {s.name for s in stamps}
    assert 60 <= len(stamps) <= 130
    assert {"horse", "donkey", "zebra", "cow", "bull", "duck", "drake", "violin"} <= names
    assert not any(s.path.startswith("symbols/") for s in stamps)  # glyphs and cartoons are out
    assert not any("_desc" in s.name for s in stamps)
    for stamp in stamps:
        alpha = stamp.rgba[..., 3]
        assert (alpha == 0).any() and (alpha == 255).any()  # a cut-out, not a rectangle
        assert stamp.audio.dtype == np.float32 and stamp.audio.size > 0


def test_shared_recordings_are_found(package_stamps):
    pairs = same_recordings(package_stamps)
    # Tux Paint 2022.06 reuses these (checked by ear and by their decoded samples)
    assert {frozenset(p) for p in (("ram", "mountaingoat"), ("badger", "beaver"), ("goat", "ram"))} <= pairs
    assert frozenset(("horse", "donkey")) not in pairs and len(pairs) <= 6

    rng = np.random.default_rng(0)
    bleat = rng.standard_normal(8000).astype(np.float32)
    louder_and_later = np.concatenate([np.zeros(300, np.float32), 3 * bleat])[:8000]  # the same sound, shifted
    other = rng.standard_normal(8000).astype(np.float32)
    rgba = np.zeros((2, 2, 4), np.uint8)
    synthetic = [Stamp("a", "a", rgba, bleat), Stamp("b", "b", rgba, louder_and_later), Stamp("c", "c", rgba, other)]
    assert same_recordings(synthetic) == {frozenset(("a", "b"))}


def test_no_clip_holds_two_stamps_with_one_recording(stamps_root, package_stamps):
    pairs = same_recordings(package_stamps)
    subsets = json.loads((stamps_root / "sources.json").read_text())["summary"]["subsets"]
    compositions = [
        c["composition"].split("|")[0].split("+") for s in ("ms3", "hard") for c in subsets[s]["compositions"].values()
    ]
    assert compositions and all(len(objects) >= 2 for objects in compositions)
    for objects in compositions:
        assert not any(frozenset((a, b)) in pairs for a in objects for b in objects if a != b), objects


def test_deterministic_from_the_seed(stamps_root, tmp_path):
    again = tmp_path / "again"
    build_stamps(small_stamps_config(), again, repo_root=REPO, progress=False)
    for pattern in ("*.csv", "*.png", "*.mp4", "categories.json"):
        assert _files(stamps_root, pattern) == _files(again, pattern), pattern
    first, second = load_stamps_source(stamps_root).clips, load_stamps_source(again).clips
    for a, b in zip(first[:6], second[:6]):
        ca, cb = load_clip(a), load_clip(b)
        np.testing.assert_array_equal(ca.frames, cb.frames)
        np.testing.assert_array_equal(ca.audio, cb.audio)
    other = tmp_path / "other"
    build_stamps(small_stamps_config(seed=1), other, repo_root=REPO, progress=False)
    assert _files(stamps_root, "*.png") != _files(other, "*.png")


def test_counts_splits_and_layout(stamps_root):
    source = load_stamps_source(stamps_root)
    counts = {subset: sum(c.subset == subset for c in source.clips) for subset in ("s4", "ms3", "hard")}
    assert counts == {"s4": 8, "ms3": 10, "hard": 10}
    assert (stamps_root / "s4_data/raw_videos").is_dir() and (stamps_root / "COPYRIGHT.tuxpaint-stamps").is_file()
    for clip in source.clips:
        assert isinstance(clip.frames, Path) and clip.frames.suffix == ".mp4"
        assert clip.audio == clip.frames  # audio comes from the mp4's AAC track
    categories = json.loads((stamps_root / "categories.json").read_text())
    assert sorted(categories.values()) == list(range(1, len(categories) + 1))


def test_test_compositions_are_unseen_in_training(stamps_root):
    summary = json.loads((stamps_root / "sources.json").read_text())["summary"]
    for subset in ("s4", "ms3", "hard"):
        clips = summary["subsets"][subset]["compositions"].values()
        by_split = {
            split: {c["composition"] for c in clips if c["split"] == split} for split in ("train", "val", "test")
        }
        assert by_split["test"] and by_split["train"], subset
        assert not by_split["test"] & by_split["train"], subset
        assert not by_split["val"] & by_split["train"], subset
    with (stamps_root / "ms3_meta_data.csv").open() as handle:
        splits = {row["video_id"]: row["split"] for row in csv.DictReader(handle)}
    assert splits == {k: v["split"] for k, v in summary["subsets"]["ms3"]["compositions"].items()}


def test_masks_and_audio_agree_with_sounding(stamps_root):
    source = load_stamps_source(stamps_root)
    silent_seconds = 0
    for ref in source.clips:
        clip = load_clip(ref)
        assert clip.annotated.all()
        for t in range(ref.num_frames):
            has_mask = bool(clip.masks[t].any())
            loud = _dbfs(clip.audio[t]) > SOUNDING_DBFS
            assert clip.sounding[t] == has_mask == loud, (ref.clip_id, t, _dbfs(clip.audio[t]))
            silent_seconds += not has_mask
            # sounding pixels are a subset of the visible objects' pixels
            assert not (clip.masks[t] & ~clip.visible[t]).any()
        if ref.subset == "s4":
            assert clip.sounding.all()
    assert silent_seconds > 0  # ms3 has fully silent seconds


def test_hard_split_has_one_sounding_lookalike(stamps_root):
    groups = [set(g) for g in LOOKALIKE_GROUPS]
    categories = json.loads((stamps_root / "categories.json").read_text())
    names = {v: k for k, v in categories.items()}
    for ref in load_stamps_source(stamps_root).clips:
        if ref.subset != "hard":
            continue
        clip = load_clip(ref)
        sounding_names = {names[c] for c in clip.category_ids}
        assert any(sounding_names <= g for g in groups), sounding_names
        visible = clip.visible.reshape(ref.num_frames, -1).sum(axis=1)
        sounding = clip.masks.reshape(ref.num_frames, -1).sum(axis=1)
        assert (sounding < visible).all()  # a silent look-alike is always in view
        assert clip.sounding.all()  # exactly one of them sounds in every second


def test_hard_clips_come_in_pairs_that_differ_only_in_what_sounds(stamps_root):
    refs = {ref.clip_id.split("/")[-1]: ref for ref in load_stamps_source(stamps_root).clips if ref.subset == "hard"}
    names = sorted(refs)
    assert len(names) == 10
    for first, second in zip(names[::2], names[1::2]):
        a, b = load_clip(refs[first]), load_clip(refs[second])
        assert refs[first].split == refs[second].split
        np.testing.assert_array_equal(a.visible, b.visible)  # the same scene ...
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 2  # (H.264 of equal frames)
        for t in range(refs[first].num_frames):  # ... with another look-alike sounding in every second
            assert a.masks[t].any() and b.masks[t].any() and not (a.masks[t] & b.masks[t]).any(), (first, t)
