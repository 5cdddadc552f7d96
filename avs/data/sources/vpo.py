"""VPO adapter (Chen, Liu et al., CVPR 2024): COCO images paired with VGGSound recordings.

The layout as cyh-0/CAVP's loaders read it (../shared/DATASETS.md, VPO), under `data.root`:
  VPO/VPO-{SS,MS,MSMI}/vpo_{ss,ms,msmi}_data_stereo.csv
      columns cateName,img_Id,ann_Ids,cateId,vgg_file,split (+ audio_pos; + multi_instance in MSMI)
  VPO-SS   data/{cateName}/{img_Id:012d}.jpg, mask/{cateName}/{img_Id:012d}_{ann_Id:012d}.png
  VPO-MS   data/{img_Id:012d}.jpg, mask/{img_Id:012d}_{ann_Id:012d}.png
  VPO-MSMI as VPO-MS; rows with multi_instance == 0 have their files in VPO-MS
  VGGSound/audios/{vgg_file}.wav (`data.audio_root` is the VGGSound folder)
Mask PNGs hold COCO category ids (0 background, 255 ignore). One sample is one image: the rows
of an image (one per sounding source) give the union of their masks and the sum of their audio,
each in the centred 3 s window; `stereo` pans each row's mono wav by its `audio_pos`. The
release's `val` is the test split; a seeded share of `train` images becomes `val`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from avs.config import DataConfig
from avs.data.clip import ClipRef
from avs.data.errors import DataError
from avs.data.sources.base import CsvRow, Source, read_metadata_csv, require_dir

VPO_CLASSES = (
    "airplane", "baby", "bird", "bus", "car", "cat", "cell phone", "cow", "dog", "elephant",
    "female", "horse", "keyboard", "male", "motorcycle", "mouse", "sheep", "skateboard",
    "sports ball", "tennis racket", "zebra",
)
VPO_AUDIO_WINDOW_S = 3  # the centred window of each VGGSound recording
_COLUMNS = {"cateName": 0, "img_Id": 1, "ann_Ids": 2, "cateId": 3, "vgg_file": 4, "split": 5}
_RELEASE_SPLITS = {"train": "train", "val": "test"}


def load_vpo(root: Path, subset: str, cfg: DataConfig) -> Source:
    """A VPO subset (`ss`, `ms` or `msmi`): one single-frame clip per image."""
    base = require_dir(root / "VPO" / f"VPO-{subset.upper()}", f"VPO/VPO-{subset.upper()} of the VPO release under {root}")
    csv_path = base / f"vpo_{subset}_data_stereo.csv"
    audio_dir = require_dir(Path(cfg.audio_root) if cfg.audio_root else root / "VGGSound",
                            "the VGGSound folder (with audios/) named by data.audio_root")
    categories = {"background": 0, **{name: i for i, name in enumerate(VPO_CLASSES, start=1)}}
    stereo = cfg.vpo_audio == "stereo"
    rows = read_metadata_csv(csv_path, _COLUMNS)
    if stereo and rows and "audio_pos" not in rows[0].values:
        raise DataError(csv_path, "data.vpo_audio is stereo but the CSV has no audio_pos column")
    coco_to_class = _coco_classes(rows, csv_path, categories)
    by_image: dict[int, list[CsvRow]] = defaultdict(list)
    for row in rows:
        by_image[_integer(row, "img_Id", csv_path)].append(row)
    splits = _splits(by_image, csv_path, cfg.vpo_val_fraction, cfg.vpo_val_seed)
    semantic = cfg.vpo_labels == "semantic"
    clips = []
    for img_id, image_rows in by_image.items():
        folders = [_row_folders(root, base, subset, row, csv_path) for row in image_rows]
        names = sorted({row.get("cateName") for row in image_rows})
        masks = tuple(dict.fromkeys(  # rows may share an instance: each mask file once
            mask_dir / f"{img_id:012d}_{ann:012d}.png"
            for (_, mask_dir), row in zip(folders, image_rows) for ann in _ann_ids(row, csv_path)))
        clips.append(ClipRef(
            clip_id=f"vpo_{subset}/{img_id:012d}",
            subset=f"vpo_{subset}",
            split=splits[img_id],
            num_frames=1,
            origin=image_rows[0].origin,
            frames=(folders[0][0] / f"{img_id:012d}.jpg",),
            audio=tuple(_wav(audio_dir, row.get("vgg_file")) for row in image_rows),
            masks=(masks,),
            mask_format="category_ids",
            num_classes=len(categories) if semantic else 2,
            class_map=tuple(sorted(coco_to_class.items())) if semantic else (),
            category_ids=tuple(sorted(categories[n] for n in names)),
            sounding=(True,),
            audio_window_s=VPO_AUDIO_WINDOW_S,
            audio_pan=tuple(_audio_pos(row, csv_path) for row in image_rows) if stereo else None,
        ))
    if semantic:
        return Source(f"vpo_{subset}", "semantic", len(categories), categories, clips)
    return Source(f"vpo_{subset}", "binary", 2, categories, clips)


def _coco_classes(rows: list[CsvRow], csv_path: Path, categories: dict[str, int]) -> dict[int, int]:
    """COCO category id (as in the masks and `cateId`) -> VPO class index, from the CSV's pairs."""
    mapping: dict[int, int] = {}
    for row in rows:
        name, coco = row.get("cateName"), _integer(row, "cateId", csv_path)
        if name not in categories or name == "background":
            raise DataError(csv_path, f"{row.origin}: cateName '{name}' is not one of the 21 VPO classes")
        if mapping.setdefault(coco, categories[name]) != categories[name]:
            raise DataError(csv_path, f"{row.origin}: cateId {coco} is '{name}' here but another class elsewhere")
    return mapping


def _splits(by_image: dict[int, list[CsvRow]], csv_path: Path, val_fraction: float, seed: int) -> dict[int, str]:
    """Each image's split: the release's `val` is test; a seeded share of `train` becomes val."""
    splits = {}
    for img_id, rows in by_image.items():
        found = {row.get("split") for row in rows}
        if len(found) > 1:
            raise DataError(csv_path, f"{rows[0].origin}: image {img_id} is listed in splits {sorted(found)}")
        (split,) = found
        if split not in _RELEASE_SPLITS:
            raise DataError(csv_path, f"{rows[0].origin}: split '{split}' is not one of train, val")
        splits[img_id] = _RELEASE_SPLITS[split]
    train = sorted(i for i, s in splits.items() if s == "train")
    chosen = np.random.default_rng(seed).permutation(len(train))[: round(val_fraction * len(train))]
    for index in chosen:
        splits[train[index]] = "val"
    return splits


def _row_folders(root: Path, base: Path, subset: str, row: CsvRow, csv_path: Path) -> tuple[Path, Path]:
    """The folders of a row's image and masks: per class in VPO-SS; MSMI's rows with
    multi_instance == 0 are in VPO-MS."""
    if subset == "ss":
        return base / "data" / row.get("cateName"), base / "mask" / row.get("cateName")
    if subset == "msmi" and row.get("multi_instance") != "" and _integer(row, "multi_instance", csv_path) == 0:
        base = root / "VPO" / "VPO-MS"
    return base / "data", base / "mask"


def _ann_ids(row: CsvRow, csv_path: Path) -> list[int]:
    """The row's instance ids: one number as released; a list ("[1, 2]" or "1;2") is accepted too."""
    ids = [int(v) for v in re.findall(r"\d+", row.get("ann_Ids"))]
    if not ids:
        raise DataError(csv_path, f"{row.origin}: ann_Ids '{row.get('ann_Ids')}' holds no instance id")
    return ids


def _audio_pos(row: CsvRow, csv_path: Path) -> float:
    try:
        pos = float(row.get("audio_pos"))
    except ValueError:
        pos = float("nan")
    if not 0.0 <= pos <= 1.0:
        raise DataError(csv_path, f"{row.origin}: audio_pos '{row.get('audio_pos')}' is not a number in [0, 1]")
    return pos


def _integer(row: CsvRow, column: str, csv_path: Path) -> int:
    value = row.get(column)
    if not value.isdigit():
        raise DataError(csv_path, f"{row.origin}: {column} '{value}' is not a whole number")
    return int(value)


def _wav(audio_dir: Path, name: str) -> Path:
    return audio_dir / "audios" / (name if Path(name).suffix else f"{name}.wav")
