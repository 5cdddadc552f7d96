"""AVSBench adapters: S4 ("v1s"), MS3 ("v1m") and AVSBench-semantic (AVSS), as published.

Layouts (see ../shared/DATASETS.md and the README):
  S4   s4_meta_data.csv; s4_data/{visual_frames,gt_masks}/{split}/{category}/{name}/{name}_{1..5}.png,
       s4_data/audio_wav/{split}/{category}/{name}.wav. Train clips annotate only frame 1.
  MS3  ms3_meta_data.csv; ms3_data/visual_frames/[{vid}/]{vid}.mp4_{1..5}.png,
       ms3_data/audio_wav/{split}/{vid}.wav, ms3_data/gt_masks/{split}/{vid}/{vid}_{1..5}.png.
  AVSS metadata.csv, label2idx.json; {label}/{uid}/{frames/{i}.jpg, audio.wav,
       labels_semantic/{i}.png | labels_rgb/{i}.png}, i from 0.

Where a clip has no extracted frames the adapter decodes `raw_videos/...mp4` instead (frame at
the middle of each second), and where it has no wav it reads the video's audio track: that is
how the embedded `stamps` set, written in this same layout, is read.
"""

from __future__ import annotations

import json
from pathlib import Path

from avs.data.clip import ClipRef
from avs.data.errors import DataError
from avs.data.sources.base import Source, read_metadata_csv, require_dir, split_of

AVSBENCH_FRAMES = 5
AVSS_CLASSES = 71
AVSS_CLIP_FRAMES = 10  # v2 clips; the official loaders pad v1s/v1m clips to this


def s4_clips(root: Path, subset: str = "s4", categories: dict[str, int] | None = None
             ) -> tuple[list[ClipRef], dict[str, int]]:
    """Clips of an S4-layout subset, and its category ids (sorted names from 1 unless given)."""
    data = require_dir(root / f"{subset}_data", f"the {subset.upper()} data folder beside {subset}_meta_data.csv")
    rows = read_metadata_csv(root / f"{subset}_meta_data.csv", {"name": 0, "category": 2, "split": 3})
    if categories is None:
        names = sorted({row.get("category") for row in rows})
        categories = {name: index for index, name in enumerate(names, start=1)}
    clips = []
    for row in rows:
        split, name, category = split_of(row, data), row.get("name"), row.get("category")
        if category not in categories:
            raise DataError(root / f"{subset}_meta_data.csv", f"{row.origin}: unknown category '{category}'")
        where = Path(split) / category
        frames_dir = data / "visual_frames" / where / name
        video = data / "raw_videos" / where / f"{name}.mp4"
        masks_dir = data / "gt_masks" / where / name
        mask_paths = [masks_dir / f"{name}_{i}.png" for i in range(1, AVSBENCH_FRAMES + 1)]
        # AVSBench S4 train annotates only the first frame; the others count when present.
        masks = tuple(
            (p,) if (t == 0 or split != "train" or p.is_file()) else ()
            for t, p in enumerate(mask_paths)
        )
        clips.append(ClipRef(
            clip_id=f"{subset}/{name}",
            subset=subset,
            split=split,
            num_frames=AVSBENCH_FRAMES,
            origin=row.origin,
            frames=_frames_or_video(frames_dir, [f"{name}_{i}.png" for i in range(1, AVSBENCH_FRAMES + 1)], video),
            audio=_wav_or_video(data / "audio_wav" / where / f"{name}.wav", video),
            masks=masks,
            category_ids=(categories[category],),
            visible_masks=_visible(data / "visible_masks" / where / name, name),
            sounding=(True,) * AVSBENCH_FRAMES,  # S4: the single source sounds throughout
        ))
    return clips, categories


def ms3_clips(root: Path, subset: str = "ms3", categories: dict[str, int] | None = None) -> list[ClipRef]:
    """Clips of an MS3-layout subset. A `categories` column (names joined by ';') is optional."""
    data = require_dir(root / f"{subset}_data", f"the {subset.upper()} data folder beside {subset}_meta_data.csv")
    rows = read_metadata_csv(root / f"{subset}_meta_data.csv", {"video_id": 0, "split": 1})
    clips = []
    for row in rows:
        split, vid = split_of(row, data), row.get("video_id")
        names = [n for n in row.get("categories").split(";") if n]
        unknown = [n for n in names if n not in (categories or {})]
        if unknown:
            raise DataError(root / f"{subset}_meta_data.csv", f"{row.origin}: unknown category '{unknown[0]}'")
        frames_dir = data / "visual_frames"
        if (frames_dir / vid).is_dir():  # some copies nest each clip's frames in a folder
            frames_dir = frames_dir / vid
        video = data / "raw_videos" / f"{vid}.mp4"
        masks_dir = data / "gt_masks" / split / vid
        clips.append(ClipRef(
            clip_id=f"{subset}/{vid}",
            subset=subset,
            split=split,
            num_frames=AVSBENCH_FRAMES,
            origin=row.origin,
            frames=_frames_or_video(frames_dir, [f"{vid}.mp4_{i}.png" for i in range(1, AVSBENCH_FRAMES + 1)], video),
            audio=_wav_or_video(data / "audio_wav" / split / f"{vid}.wav", video),
            masks=tuple((masks_dir / f"{vid}_{i}.png",) for i in range(1, AVSBENCH_FRAMES + 1)),
            category_ids=tuple(sorted(categories[n] for n in names)) if names else (),
            visible_masks=_visible(data / "visible_masks" / split / vid, vid),
        ))
    return clips


def load_avsbench_s4(root: Path) -> Source:
    clips, categories = s4_clips(root)
    return Source("avsbench_s4", "binary", 2, {"background": 0, **categories}, clips)


def load_avsbench_ms3(root: Path) -> Source:
    return Source("avsbench_ms3", "binary", 2, {"background": 0}, ms3_clips(root))


def load_avss(root: Path) -> Source:
    """AVSBench-semantic: v1s, v1m (5 frames) and v2 (10 frames) clips with 71 classes."""
    label_map = root / "label2idx.json"
    if not label_map.is_file():
        raise DataError(label_map, "label map not found: expected the official label2idx.json (71 classes)")
    try:
        categories = {str(k): int(v) for k, v in json.loads(label_map.read_text()).items()}
    except (ValueError, AttributeError) as err:
        raise DataError(label_map, f"not a JSON object of class name -> id: {err}") from None
    categories = _zero_based_classes(label_map, categories)
    csv_path = root / "metadata.csv"
    rows = read_metadata_csv(csv_path, {"vid": 0, "uid": 1, "s_min": 2, "s_sec": 3, "a_obj": 4, "split": 5, "label": 6})
    clips = []
    for row in rows:
        split, uid, label = split_of(row, csv_path), row.get("uid"), row.get("label")
        if label not in ("v1s", "v1m", "v2"):
            raise DataError(csv_path, f"{row.origin}: label '{label}' is not one of v1s, v1m, v2")
        num_frames = AVSS_CLIP_FRAMES if label == "v2" else AVSBENCH_FRAMES
        clip_dir = root / label / uid
        semantic = (clip_dir / "labels_semantic").is_dir()
        masks_dir = clip_dir / ("labels_semantic" if semantic else "labels_rgb")
        mask_paths = [masks_dir / f"{i}.png" for i in range(num_frames)]
        partly_annotated = label == "v1s" and split == "train"  # like S4: frame 0 only
        clips.append(ClipRef(
            clip_id=f"{label}/{uid}",
            subset=label,
            split=split,
            num_frames=num_frames,
            origin=row.origin,
            frames=tuple(clip_dir / "frames" / f"{i}.jpg" for i in range(num_frames)),
            audio=clip_dir / "audio.wav",
            masks=tuple(
                (p,) if (t == 0 or not partly_annotated or p.is_file()) else ()
                for t, p in enumerate(mask_paths)
            ),
            mask_format="semantic" if semantic else "palette_rgb",
            num_classes=AVSS_CLASSES,
        ))
    return Source("avss", "semantic", AVSS_CLASSES, categories, clips)


def _zero_based_classes(path: Path, categories: dict[str, int]) -> dict[str, int]:
    """Class name -> palette index 0..70. The release numbers classes 1..71 (background = 1);
    a 0-based copy is accepted as it is."""
    ids = sorted(categories.values())
    for first in (1, 0):
        if ids == list(range(first, first + AVSS_CLASSES)):
            return {name: value - first for name, value in categories.items()}
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    found = f"{len(ids)} entries with ids {ids[0]}..{ids[-1]}" if ids else "no entries"
    if repeated:
        found += f", id {repeated[0]} used more than once"
    raise DataError(path, f"expected {AVSS_CLASSES} classes numbered 1..{AVSS_CLASSES} as released "
                          f"(or 0..{AVSS_CLASSES - 1}), each id once; found {found}")


def _frames_or_video(frames_dir: Path, names: list[str], video: Path) -> tuple[Path, ...] | Path:
    """Extracted frames when there are any, else the clip's video."""
    frames = tuple(frames_dir / n for n in names)
    return video if (not frames[0].is_file() and video.is_file()) else frames


def _wav_or_video(wav: Path, video: Path) -> Path:
    return video if (not wav.is_file() and video.is_file()) else wav


def _visible(folder: Path, name: str) -> tuple[Path, ...] | None:
    if not folder.is_dir():
        return None
    return tuple(folder / f"{name}_{i}.png" for i in range(1, AVSBENCH_FRAMES + 1))
