"""Build the embedded `stamps` dataset in the AVSBench on-disk layout.

Three subsets, each a metadata CSV plus a `{subset}_data/` folder:
  s4    one object, sounding throughout (S4 layout: {split}/{category}/{name}/...).
  ms3   2-3 objects, 1-3 sounding; the sounding set changes between seconds, with fully silent
        seconds whose masks are empty (MS3 layout).
  hard  2-3 look-alikes from one group (horse / donkey / zebra, ...), exactly one sounding in
        each second (MS3 layout). Clips come in pairs with the same frames and a different
        look-alike sounding in every second, so only the audio tells which one to segment.
No clip holds two stamps that share a recording (`assets.same_recordings`): the audio always tells.
Per clip: `raw_videos/.../NAME.mp4` (H.264 + AAC, frame t shown during second t),
`gt_masks/.../NAME_{1..T}.png` (0/255, the sounding objects' visible pixels) and
`visible_masks/.../NAME_{1..T}.png` (every visible object, for the visual-only baseline).

Splits are assigned by composition (s4: the object and background; ms3 and hard: the set of
objects), hashed with the seed, so test clips are combinations never seen in training.
Everything is a function of the parameters: the same `stamps` params give byte-identical masks,
CSVs and audio.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from avs.config import StampsConfig
from avs.data.media import write_clip_video
from avs.data.stamps.assets import (
    COPYRIGHT_FILE, LOOKALIKE_GROUPS, PACKAGE, STAMPS_SUBDIR, Stamp, find_deb, load_backgrounds,
    load_stamps, same_recordings, unpack_deb,
)
from avs.data.stamps.compose import (
    Placement, RenderedClip, Scene, SceneObject, crop_background, drift, render_scene,
)

SUBSETS = ("s4", "ms3", "hard")
SILENT_SECOND_P = 0.2  # ms3: chance that a second has no sounding object
SWITCH_P = 0.35  # hard: chance that the sounding look-alike changes once mid-clip


@dataclass(frozen=True)
class PlannedClip:
    subset: str
    name: str
    split: str
    category: str  # s4: the object; ms3/hard: unused
    composition: str  # what decides the split: the objects (s4: and the background)
    scene: Scene


def build_stamps(cfg: StampsConfig, out_dir: Path, repo_root: Path = Path("."), progress: bool = True) -> dict:
    """Generate the dataset into `out_dir` (replaced atomically). Returns its summary."""
    deb = find_deb(repo_root / cfg.deb_dir)
    unpacked = unpack_deb(deb, repo_root / cfg.unpack_dir)
    stamps = load_stamps(unpacked / STAMPS_SUBDIR)
    backgrounds = load_backgrounds()
    alike = same_recordings(stamps)
    categories = {stamp.name: index for index, stamp in enumerate(stamps, start=1)}

    scratch = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        summary = {"package": deb.name, "seed": cfg.seed, "subsets": {}}
        for subset in SUBSETS:
            plan = plan_subset(cfg, subset, stamps, backgrounds, alike)
            summary["subsets"][subset] = _write_subset(cfg, scratch, subset, plan, progress)
        (scratch / "categories.json").write_text(json.dumps(categories, indent=1) + "\n")
        _write_notices(scratch, unpacked, deb, stamps, backgrounds, cfg, summary)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    scratch.rename(out_dir)
    return summary


def plan_subset(cfg: StampsConfig, subset: str, stamps: list[Stamp], backgrounds: list[tuple[str, np.ndarray]],
                alike: frozenset[frozenset[str]]) -> list[PlannedClip]:
    """Decide every clip of a subset: its objects, motion, sounding schedule and split.

    `alike`: the pairs of stamps that share a recording (`same_recordings`), never in one clip.
    """
    total = getattr(cfg.clips, subset)
    quotas = _quotas(total, cfg.val_fraction, cfg.test_fraction)
    rng = np.random.default_rng([cfg.seed, SUBSETS.index(subset)])
    compose = {"s4": _compose_s4, "ms3": _compose_ms3, "hard": _compose_hard}[subset]
    by_name = {s.name: s for s in stamps}
    groups = [_distinct_sounds([by_name[n] for n in g if n in by_name], alike) for g in LOOKALIKE_GROUPS]
    groups = [g for g in groups if len(g) >= 2]
    planned: list[PlannedClip] = []
    attempts = 0
    while len(planned) < total:
        attempts += 1
        if attempts > 1000 * total:
            raise RuntimeError(
                f"stamps.{subset}: could not fill the split quotas {quotas} from the available "
                "compositions; lower stamps.clips or change the split fractions"
            )
        background_name, photo = backgrounds[int(rng.integers(len(backgrounds)))]
        objects, key = compose(rng, cfg, stamps, groups)
        if any(_share_recording(a.stamp, b.stamp, alike) for a in objects for b in objects):
            continue  # two objects with one recording: which one sounds is not in the audio
        if subset == "s4":
            key = f"{key}|{background_name}"
        split = _split_of(cfg.seed, subset, key, cfg.val_fraction, cfg.test_fraction)
        if quotas[split] == 0:
            continue
        background = crop_background(rng, photo, cfg.image_size)
        # hard: the same scene twice, the second with the sounding look-alike changed in every
        # second, so that which object sounds cannot be told from the frames alone
        variants = [objects, _other_sounding(objects)] if subset == "hard" else [objects]
        for variant in variants[:quotas[split]]:
            quotas[split] -= 1
            name = f"{subset}_{len(planned):04d}"
            planned.append(PlannedClip(subset, name, split, variant[0].stamp.name, key, Scene(background, variant)))
    return planned


def _distinct_sounds(group: list[Stamp], alike: frozenset[frozenset[str]]) -> tuple[Stamp, ...]:
    """The group's members in order, leaving out any whose recording is one already kept has."""
    kept: list[Stamp] = []
    for stamp in group:
        if not any(_share_recording(stamp, other, alike) for other in kept):
            kept.append(stamp)
    return tuple(kept)


def _share_recording(first: Stamp, second: Stamp, alike: frozenset[frozenset[str]]) -> bool:
    return frozenset((first.name, second.name)) in alike


def _compose_s4(rng, cfg: StampsConfig, stamps, groups) -> tuple[tuple[SceneObject, ...], str]:
    stamp = stamps[int(rng.integers(len(stamps)))]
    size = cfg.image_size
    start = Placement(rng.uniform(0.35, 0.65) * size, rng.uniform(0.35, 0.65) * size,
                      rng.uniform(0.45, 0.7) * size)
    placements = drift(rng, start, cfg.num_frames, size)
    return (SceneObject(stamp, placements, (True,) * cfg.num_frames),), stamp.name


def _compose_ms3(rng, cfg: StampsConfig, stamps, groups) -> tuple[tuple[SceneObject, ...], str]:
    count = int(rng.integers(2, 4))
    chosen = [stamps[i] for i in rng.choice(len(stamps), size=count, replace=False)]
    schedule = _ms3_schedule(rng, count, cfg.num_frames)
    objects = _side_by_side(rng, cfg, chosen, schedule)
    return objects, "+".join(sorted(s.name for s in chosen))


def _compose_hard(rng, cfg: StampsConfig, stamps, groups) -> tuple[tuple[SceneObject, ...], str]:
    group = groups[int(rng.integers(len(groups)))]
    count = int(rng.integers(2, min(3, len(group)) + 1))
    chosen = [group[i] for i in rng.choice(len(group), size=count, replace=False)]
    first = int(rng.integers(count))
    voice = [first] * cfg.num_frames
    if cfg.num_frames > 1 and rng.random() < SWITCH_P:
        at = int(rng.integers(1, cfg.num_frames))
        other = int(rng.choice([i for i in range(count) if i != first]))
        voice[at:] = [other] * (cfg.num_frames - at)
    schedule = np.array([[voice[t] == k for k in range(count)] for t in range(cfg.num_frames)])
    objects = _side_by_side(rng, cfg, chosen, schedule)
    return objects, "+".join(sorted(s.name for s in chosen))


def _other_sounding(objects: tuple[SceneObject, ...]) -> tuple[SceneObject, ...]:
    """The same objects and motion, each sounding when the previous one did (a rotation of the schedules)."""
    schedules = [obj.sounding for obj in objects]
    return tuple(replace(obj, sounding=schedules[k - 1]) for k, obj in enumerate(objects))


def _ms3_schedule(rng: np.random.Generator, count: int, seconds: int) -> np.ndarray:
    """(T, K) sounding flags: 1-K objects or silence per second, changing at least once."""
    while True:
        schedule = np.zeros((seconds, count), bool)
        for t in range(seconds):
            if rng.random() >= SILENT_SECOND_P:
                active = rng.choice(count, size=int(rng.integers(1, count + 1)), replace=False)
                schedule[t, active] = True
        changes = seconds == 1 or (schedule[1:] != schedule[:-1]).any()
        if changes and schedule.any():
            return schedule


def _side_by_side(rng, cfg: StampsConfig, chosen: list[Stamp], schedule: np.ndarray) -> tuple[SceneObject, ...]:
    """Objects in their own horizontal slots (shuffled), overlapping a little at most."""
    size, count = cfg.image_size, len(chosen)
    slots = rng.permutation(count)
    objects = []
    for k, stamp in enumerate(chosen):
        slot_width = size / count
        side = rng.uniform(0.75, 0.95) * min(slot_width * 1.1, 0.6 * size)
        start = Placement((slots[k] + 0.5) * slot_width + rng.uniform(-0.08, 0.08) * slot_width,
                          rng.uniform(0.35, 0.65) * size, side)
        objects.append(SceneObject(stamp, drift(rng, start, cfg.num_frames, size),
                                   tuple(bool(v) for v in schedule[:, k])))
    return tuple(objects)


def _quotas(total: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    val, test = round(total * val_fraction), round(total * test_fraction)
    return {"train": total - val - test, "val": val, "test": test}


def _split_of(seed: int, subset: str, key: str, val_fraction: float, test_fraction: float) -> str:
    """A composition's split: a hash of (seed, subset, composition) against the fractions."""
    digest = hashlib.sha256(f"{seed}|{subset}|{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def render_planned(cfg: StampsConfig, subset: str, index: int, clip: PlannedClip) -> RenderedClip:
    """Frames, masks and audio of the `index`-th planned clip of `subset` (its own seeded draws)."""
    rng = np.random.default_rng([cfg.seed, SUBSETS.index(subset), index, 1])
    return render_scene(rng, clip.scene, cfg.source_dbfs, cfg.noise_dbfs)


def _write_subset(cfg: StampsConfig, root: Path, subset: str, plan: list[PlannedClip], progress: bool) -> dict:
    data = root / f"{subset}_data"
    rows = []
    bar = tqdm(plan, desc=f"stamps/{subset}", unit="clip", disable=not progress)
    for index, clip in enumerate(bar):
        rendered = render_planned(cfg, subset, index, clip)
        where = Path(clip.split) / clip.category if subset == "s4" else Path(clip.split)
        video = data / "raw_videos" / (where if subset == "s4" else Path()) / f"{clip.name}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        write_clip_video(video, rendered.frames, rendered.audio, cfg.video_fps)
        _write_masks(data / "gt_masks" / where / clip.name, clip.name, rendered.sounding_masks)
        _write_masks(data / "visible_masks" / where / clip.name, clip.name, rendered.visible_masks)
        sounding_names = sorted({o.stamp.name for o in clip.scene.objects if any(o.sounding)})
        if subset == "s4":
            rows.append([clip.name, "0", clip.category, clip.split])
        else:
            rows.append([clip.name, clip.split, ";".join(sounding_names)])
    header = ["name", "start_time", "category", "split"] if subset == "s4" else ["video_id", "split", "categories"]
    with (root / f"{subset}_meta_data.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    counts = {s: sum(1 for c in plan if c.split == s) for s in ("train", "val", "test")}
    compositions = {c.name: {"split": c.split, "composition": c.composition} for c in plan}
    return {"clips": len(plan), "splits": counts, "compositions": compositions}


def _write_masks(folder: Path, name: str, masks: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, mask in enumerate(masks, start=1):
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}_{t}.png")


def _write_notices(root: Path, unpacked: Path, deb: Path, stamps: list[Stamp],
                   backgrounds: list[tuple[str, np.ndarray]], cfg: StampsConfig, summary: dict) -> None:
    copyright_file = unpacked / COPYRIGHT_FILE
    if copyright_file.is_file():
        shutil.copyfile(copyright_file, root / "COPYRIGHT.tuxpaint-stamps")
    sources = {
        "package": deb.name,
        "stamps": [{"name": s.name, "path": s.path, "seconds": round(len(s.audio) / 16000, 3)} for s in stamps],
        "backgrounds": [name for name, _ in backgrounds],
        "params": {k: v for k, v in vars(cfg).items() if k not in ("clips",)} | {"clips": vars(cfg.clips)},
        "summary": summary,
    }
    (root / "sources.json").write_text(json.dumps(sources, indent=1, default=str) + "\n")
    (root / "README.md").write_text(
        "# stamps: the embedded AVS dataset\n\n"
        f"Composed by `avs fetch` from Debian's `{PACKAGE}` ({deb.name}): real photo cut-outs\n"
        "(alpha = exact mask) with their own real recordings, over real photos bundled with\n"
        "scikit-image and scikit-learn. Layout: AVSBench (s4_meta_data.csv + s4_data/, and\n"
        "ms3-style ms3 and hard subsets). `visible_masks/` marks every visible object, sounding or\n"
        "not. The stamps are GPL-2: see COPYRIGHT.tuxpaint-stamps; sources.json lists what was used.\n"
    )

