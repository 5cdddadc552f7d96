"""Real material for the embedded dataset: Tux Paint's photo stamps and packaged background photos.

`tuxpaint-stamps-default` (Debian, GPL-2) ships real photo cut-outs whose alpha channel is an
exact object mask, many with a real recording of the object (`NAME.png` + `NAME.ogg`). We take
those pairs, leave out narration (`*_desc*`), language variants, SVGs and cartoon stamps, and
never install Tux Paint: `make setup` fetches the .deb with `apt-get download` and we unpack it
with `dpkg -x`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from avs.data.errors import DataError
from avs.data.media import SAMPLE_RATE, resample

PACKAGE = "tuxpaint-stamps-default"
STAMPS_SUBDIR = Path("usr/share/tuxpaint/stamps")
COPYRIGHT_FILE = Path(f"usr/share/doc/{PACKAGE}/copyright")

# Visually similar, acoustically different stamps: the `hard` split puts members of one group
# in the same frame with only one of them sounding.
LOOKALIKE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("horse", "donkey", "zebra"),
    ("cow", "bull", "cow_white", "bison"),
    ("goat", "sheep", "ram", "mountaingoat", "sheep_lamb"),
    ("duck", "drake", "gander"),
    ("pig", "pig_golden", "pig_golden2"),
    ("hen", "rooster", "turkey"),
    ("deer", "doe", "caribou"),
    ("camel", "dromedary"),
    ("dolphin", "orca", "whale", "sea_lion"),
    ("crow", "blackbird", "lark", "cuckoo"),
    ("lion", "tiger"),
    ("bee", "hornet", "grasshopper"),
)

# Two recordings at least this alike (peak normalised cross-correlation) count as one sound.
SAME_RECORDING = 0.8

# A photo cut-out has many colours and a real object outline; cartoons and glyphs have few
# colours, and a few photos are full rectangles (road signs) rather than cut-outs.
_MIN_COLOURS = 400  # distinct colours at 6 bits per channel among opaque pixels
_MIN_SIDE = 64
_FILL_RANGE = (0.1, 0.95)
_EXCLUDED_DIRS = ("symbols", "cartoon")

# Real photographs bundled inside the scikit-image and scikit-learn wheels (no download).
SKIMAGE_BACKGROUNDS = (
    "astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel", "hubble_deep_field",
    "rocket",
)


@dataclass(frozen=True)
class Stamp:
    """One photo cut-out with its recording."""

    name: str
    path: str  # relative to the stamps folder, without suffix
    rgba: np.ndarray  # (h, w, 4) uint8
    audio: np.ndarray  # (n,) float32 mono at 16 kHz


def find_deb(deb_dir: Path) -> Path:
    """The downloaded tuxpaint-stamps-default .deb (newest if several)."""
    debs = sorted(deb_dir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise DataError(
            deb_dir,
            f"no {PACKAGE}_*.deb here; run `make setup` (it runs `apt-get download {PACKAGE}` "
            "into this folder) or put the .deb here yourself",
        )
    return debs[-1]


def unpack_deb(deb: Path, unpack_dir: Path) -> Path:
    """Unpack the .deb with `dpkg -x` once; returns the unpacked root."""
    target = unpack_dir / deb.stem
    if (target / ".unpacked").is_file():
        return target
    if shutil.which("dpkg") is None:
        raise DataError(deb, "dpkg is needed to unpack this .deb (a Debian-based system)")
    scratch = unpack_dir / f".{deb.stem}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    result = subprocess.run(["dpkg", "-x", str(deb), str(scratch)], capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise DataError(deb, f"dpkg -x failed: {result.stderr.strip()}")
    (scratch / ".unpacked").write_text(deb.name + "\n")
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target


def is_photo_cutout(rgba: np.ndarray, relative_path: str) -> bool:
    """Whether a stamp is a real photo cut-out (not a cartoon, glyph or full rectangle)."""
    if any(part in _EXCLUDED_DIRS for part in Path(relative_path).parts):
        return False
    if min(rgba.shape[:2]) < _MIN_SIDE:
        return False
    opaque = rgba[..., 3] > 127
    fill = float(opaque.mean())
    if not _FILL_RANGE[0] <= fill <= _FILL_RANGE[1]:
        return False
    colours = np.unique(rgba[opaque][:, :3] // 4, axis=0)
    return len(colours) >= _MIN_COLOURS


def load_stamps(stamps_root: Path) -> list[Stamp]:
    """Every photo stamp with its own recording, sorted by name."""
    import soundfile

    if not stamps_root.is_dir():
        raise DataError(stamps_root, "stamps folder not found in the unpacked package")
    stamps: dict[str, Stamp] = {}
    for sound in sorted(stamps_root.rglob("*.ogg")):
        image = sound.with_suffix(".png")
        if "_desc" in sound.stem or not image.is_file() or sound.stem in stamps:
            continue  # narration, language variants (no same-name PNG) and duplicates
        with Image.open(image) as img:
            if img.mode != "RGBA":
                continue  # photos are stored RGBA; greyscale and palette stamps are drawings
            rgba = np.asarray(img)
        relative = str(image.relative_to(stamps_root).with_suffix(""))
        if not is_photo_cutout(rgba, relative):
            continue
        try:
            data, rate = soundfile.read(str(sound), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as err:
            raise DataError(sound, f"cannot decode stamp recording: {err}") from None
        audio = resample(data.mean(axis=1), rate, SAMPLE_RATE)
        if float(np.abs(audio).max(initial=0.0)) < 1e-3:
            continue
        stamps[sound.stem] = Stamp(sound.stem, relative, rgba, audio)
    if not stamps:
        raise DataError(stamps_root, "no photo stamps with recordings found")
    return [stamps[name] for name in sorted(stamps)]


def same_recordings(stamps: list[Stamp]) -> frozenset[frozenset[str]]:
    """Pairs of stamps whose recordings are one sound.

    Tux Paint reuses a few: ram and mountaingoat share one, so do badger and beaver, and goat's
    is the same bleat processed differently (peak correlation 0.88). Two such stamps in one clip,
    one sounding, cannot be told apart by ear, and a `hard` pair of clips would teach opposite
    targets for the same frames and sound. A reused recording keeps its length, so only stamps
    with equally long recordings are compared (all 3003 pairs of the package agree).
    """
    by_length: dict[int, list[Stamp]] = {}
    for stamp in stamps:
        by_length.setdefault(len(stamp.audio), []).append(stamp)
    pairs = set()
    for same_length in by_length.values():
        for i, first in enumerate(same_length):
            for second in same_length[i + 1:]:
                if _peak_correlation(first.audio, second.audio) >= SAME_RECORDING:
                    pairs.add(frozenset((first.name, second.name)))
    return frozenset(pairs)


def _peak_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Peak of the normalised cross-correlation of two recordings over all lags (their first 3 s)."""
    n = min(len(a), len(b), 3 * SAMPLE_RATE)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    correlation = np.fft.irfft(np.fft.rfft(a, 2 * n) * np.conj(np.fft.rfft(b, 2 * n)), 2 * n)
    return float(np.abs(correlation).max() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def load_backgrounds() -> list[tuple[str, np.ndarray]]:
    """Real background photographs that ship inside installed wheels, as RGB uint8."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    backgrounds = []
    for name in SKIMAGE_BACKGROUNDS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        backgrounds.append((f"skimage.{name}", np.ascontiguousarray(image[..., :3], np.uint8)))
    left, right, _ = skimage.data.stereo_motorcycle()
    backgrounds += [("skimage.motorcycle_left", left), ("skimage.motorcycle_right", right)]
    sample = load_sample_images()
    for path, image in zip(sample.filenames, sample.images):
        backgrounds.append((f"sklearn.{Path(path).stem}", np.asarray(image, np.uint8)))
    return backgrounds
