"""VPO adapter (Chen, Liu et al., CVPR 2024): single COCO images with a VGGSound recording.

Layout: VPO/VPO-{SS,MS,MSMI}/data/{img_id:012d}.jpg, VPO/VPO-{SUB}/mask/{img_id}_{ann_id}.png
(one binary mask per instance; the sounding mask is the union of the row's `ann_Ids`), and
vpo_{ss,ms,msmi}_data_{mono,stereo}.csv with columns cateName,img_Id,ann_Ids,cateId,vgg_file,split.
`val` is used as `test`. The wavs named by `vgg_file` live in a separate folder (`data.audio_root`).
"""

from __future__ import annotations

import re
from pathlib import Path

from avs.data.clip import ClipRef
from avs.data.errors import DataError
from avs.data.sources.base import Source, read_metadata_csv, require_dir, split_of

VPO_CLASSES = (
    "airplane", "baby", "bird", "bus", "car", "cat", "cell phone", "cow", "dog", "elephant",
    "female", "horse", "keyboard", "male", "motorcycle", "mouse", "sheep", "skateboard",
    "sports ball", "tennis racket", "zebra",
)
# VGGSound clips are 3 s long; the 1 s window we pair with the image is the middle one [ours].
VPO_AUDIO_OFFSET_S = 1.0


def load_vpo(root: Path, subset: str, audio_root: Path | None, variant: str = "mono") -> Source:
    """A VPO subset (`ss`, `ms` or `msmi`) as single-frame clips."""
    base = root / "VPO" / f"VPO-{subset.upper()}"
    if not base.is_dir():
        base = root / f"VPO-{subset.upper()}"
    require_dir(base, f"VPO/VPO-{subset.upper()} (with data/ and mask/) under {root}")
    csv_name = f"vpo_{subset}_data_{variant}.csv"
    candidates = [root / csv_name, root / "VPO" / csv_name]
    csv_path = next((p for p in candidates if p.is_file()), candidates[0])
    audio_dir = audio_root or root / "audio"
    require_dir(audio_dir, "the VGGSound wav folder named by data.audio_root")
    categories = {"background": 0, **{name: i for i, name in enumerate(VPO_CLASSES, start=1)}}
    rows = read_metadata_csv(csv_path, {"cateName": 0, "img_Id": 1, "ann_Ids": 2, "cateId": 3, "vgg_file": 4, "split": 5})
    clips = []
    for index, row in enumerate(rows):
        split = split_of(row, csv_path, aliases={"val": "test"})
        if not row.get("img_Id").isdigit():
            raise DataError(csv_path, f"{row.origin}: img_Id '{row.get('img_Id')}' is not a number")
        img_id = int(row.get("img_Id"))
        ann_ids = re.findall(r"\d+", row.get("ann_Ids"))
        if not ann_ids:
            raise DataError(csv_path, f"{row.origin}: ann_Ids is empty")
        names = [n.strip() for n in re.split(r"[;|]", row.get("cateName")) if n.strip()]
        unknown = [n for n in names if n not in categories]
        if unknown:
            raise DataError(csv_path, f"{row.origin}: unknown VPO class '{unknown[0]}'")
        wav = row.get("vgg_file")
        clips.append(ClipRef(
            clip_id=f"vpo_{subset}/{index:06d}_{img_id}",
            subset=f"vpo_{subset}",
            split=split,
            num_frames=1,
            origin=row.origin,
            frames=(base / "data" / f"{img_id:012d}.jpg",),
            audio=audio_dir / (wav if Path(wav).suffix else f"{wav}.wav"),
            masks=(tuple(base / "mask" / f"{img_id}_{a}.png" for a in ann_ids),),
            category_ids=tuple(sorted(categories[n] for n in names)),
            sounding=(True,),
            audio_offset_s=VPO_AUDIO_OFFSET_S,
        ))
    return Source(f"vpo_{subset}", "binary", 2, categories, clips)
