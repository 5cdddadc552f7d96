"""Writing clip mp4s: the same bytes whatever SIMD code FFmpeg or x264 would pick, in any run."""

from __future__ import annotations

import numpy as np

from avs.config import StampsConfig
from avs.data import media
from avs.data.media import _pyav_libavutil, read_video_frames, rgb_to_yuv420p, write_clip_video
from avs.data.stamps.assets import STAMPS_SUBDIR, find_deb, load_backgrounds, load_stamps, same_recordings, unpack_deb
from avs.data.stamps.build import plan_subset, render_planned
from avs.data.stamps.compose import RenderedClip
from tests.conftest import REPO

SSSE3, AVX2, FMA3, AVX512, AVX512ICL = 0x80, 0x8000, 0x10000, 0x100000, 0x200000  # libavutil's AV_CPU_FLAG_*


def test_mp4_bytes_do_not_depend_on_the_cpus_simd(tmp_path):
    # the embedded set is written on every machine that runs `dvc repro`: its hashes must agree
    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat((rng.random((3, 16, 16, 3)) * 255).astype(np.uint8), 4, axis=1), 4, axis=2)
    # like the embedded set's audio: a low noise floor, then a sound (plain noise or tones alone
    # happened to encode alike under every SIMD level; this does not)
    tone = 0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000) * np.hanning(16000)
    audio = np.concatenate([rng.normal(0, 0.003, 16000), tone, rng.normal(0, 0.003, 16000)]).astype(np.float32)
    library = _pyav_libavutil()
    assert library is not None, "the pinned PyAV wheel bundles its FFmpeg in av.libs/"
    detected = library.av_get_cpu_flags()
    written = []
    for index, flags in enumerate((-1, detected & ~(AVX2 | FMA3 | AVX512 | AVX512ICL), 0)):  # auto, no AVX2, none
        library.av_force_cpu_flags(flags)  # what FFmpeg would pick on another CPU
        try:
            write_clip_video(tmp_path / f"{index}.mp4", frames, audio, fps=4)
            assert library.av_get_cpu_flags() == (detected if flags == -1 else flags)  # left as found
        finally:
            library.av_force_cpu_flags(-1)
        written.append((tmp_path / f"{index}.mp4").read_bytes())
    assert written[0] == written[1] == written[2]
    decoded = read_video_frames(tmp_path / "0.mp4", 3).astype(int)
    assert np.abs(decoded - frames).mean() < 3  # and it still shows the frames


def test_rgb_to_yuv420p_levels_and_layout():
    image = np.zeros((4, 6, 3), np.uint8)
    image[:2] = 255  # top half white, bottom half black
    image[2:, :2] = (255, 0, 0)  # a red block
    planes = rgb_to_yuv420p(image)
    assert planes.shape == (6, 6) and planes.dtype == np.uint8
    y, chroma = planes[:4], planes[4:].reshape(2, 2, 3)  # U then V, each (2, 3) at half resolution
    assert (y[:2] == 235).all() and (y[2:, 2:] == 16).all() and (y[2:, :2] == 82).all()  # BT.601 limited range
    u, v = chroma
    assert (u[0] == 128).all() and (v[0] == 128).all()  # grey has no chroma
    assert u[1, 0] == 90 and v[1, 0] == 240  # red


def _write_clip_copies(args: tuple[str, int]) -> set[str]:
    """Write one clip `count` times into `folder`; the md5 of each file."""
    import hashlib
    from pathlib import Path

    folder, count = args
    rng = np.random.default_rng(1)
    frames = np.repeat(np.repeat((rng.random((5, 56, 56, 3)) * 255).astype(np.uint8), 4, axis=1), 4, axis=2)
    audio = (0.3 * np.sin(np.arange(5 * 16000) / 7.0) * rng.random(5 * 16000)).astype(np.float32)
    digests = set()
    for index in range(count):
        path = Path(folder) / f"{index}.mp4"
        write_clip_video(path, frames, audio, fps=4)
        digests.add(hashlib.md5(path.read_bytes()).hexdigest())
    return digests


def test_the_same_clip_gives_the_same_bytes_on_a_busy_machine(tmp_path):
    # with x264's macroblock-tree rate control (mbtree=1) on an AVX-512 CPU, some writes came out
    # different when four processes wrote at once on two cores
    import multiprocessing

    folders = [tmp_path / str(i) for i in range(4)]
    for folder in folders:
        folder.mkdir()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        digests = set().union(*pool.map(_write_clip_copies, [(str(f), 30) for f in folders]))
    assert len(digests) == 1


def _default_set_clips(subset: str, count: int) -> list[RenderedClip]:
    """The first `count` rendered clips of a subset of the default embedded set (needs `make setup`'s .deb)."""
    cfg = StampsConfig()
    stamps = load_stamps(unpack_deb(find_deb(REPO / cfg.deb_dir), REPO / cfg.unpack_dir) / STAMPS_SUBDIR)
    plan = plan_subset(cfg, subset, stamps, load_backgrounds(), same_recordings(stamps))[:count]
    return [render_planned(cfg, subset, index, clip) for index, clip in enumerate(plan)]


def test_x264_bytes_do_not_depend_on_its_simd_level(tmp_path, monkeypatch):
    # x264 picks its own SIMD code (FFmpeg's flags do not reach it); forcing its `asm` level shows
    # what another CPU would write. The levels this CPU lacks are left out.
    library = _pyav_libavutil()
    assert library is not None, "the pinned PyAV wheel bundles its FFmpeg in av.libs/"
    detected = library.av_get_cpu_flags()
    levels = [name for name, flag in (("SSSE3", SSSE3), ("AVX2", AVX2), ("AVX512", AVX512)) if detected & flag]
    assert "SSSE3" in levels, "x86-64 CPUs without SSSE3 are not supported"
    clips = _default_set_clips("hard", 16)  # with mbtree, AVX-512 gave other bytes for some of these
    written = {}
    for level in levels:
        options = dict(media.X264_OPTIONS)
        options["x264-params"] = f"{options['x264-params']}:asm={level}"
        monkeypatch.setattr(media, "X264_OPTIONS", options)
        for index, clip in enumerate(clips):
            path = tmp_path / f"{level}_{index}.mp4"
            write_clip_video(path, clip.frames, clip.audio, fps=4)
            written.setdefault(index, set()).add(path.read_bytes())
    assert all(len(files) == 1 for files in written.values()), [i for i, files in written.items() if len(files) > 1]


RESAMPLE_SCRIPT = """
import hashlib, numpy as np
from avs.data.media import resample
x = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.1
print(hashlib.md5(resample(x, 44100, 16000).tobytes()).hexdigest())
"""
# md5 of RESAMPLE_SCRIPT's samples, measured on 2026-12-01 (AMD EPYC, AVX-512): another machine
# that gets other samples would write another embedded set (other hashes in dvc.lock)
RESAMPLED_MD5 = "dd89ff80cd2bfffe062d3616089ccee2"


def test_resampled_audio_does_not_depend_on_the_cpus_simd():
    # torchaudio's resampler gave other samples when torch or oneDNN ran other code for the same
    # CPU (ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41): 112 of the embedded set's 440
    # mp4s changed. Here numpy, OpenBLAS, glibc's libm, torch and oneDNN are held to lower levels.
    import os
    import platform
    import subprocess
    import sys

    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    lowered = {
        "NPY_DISABLE_CPU_FEATURES": " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f)),
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F",
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    }
    if platform.machine() == "x86_64":
        lowered["OPENBLAS_CORETYPE"] = "Nehalem"
    digests = []
    for extra in ({}, lowered):
        run = subprocess.run(
            [sys.executable, "-c", RESAMPLE_SCRIPT],
            env={**os.environ, **extra},
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.append(run.stdout.strip())
    assert digests == [RESAMPLED_MD5, RESAMPLED_MD5]


def test_resample_keeps_what_the_new_rate_can_hold_and_rounds_to_16_bits():
    t_in, t_out = np.arange(44100) / 44100, np.arange(16000) / 16000
    tone = lambda f, t: 0.5 * np.sin(2 * np.pi * f * t)  # noqa: E731
    kept = media.resample(tone(1000, t_in).astype(np.float32), 44100, 16000)
    assert kept.shape == (16000,) and kept.dtype == np.float32
    middle = slice(800, -800)  # away from the edges, where the filter sees zeros
    assert np.abs(kept[middle] - tone(1000, t_out)[middle]).max() < 2e-3
    removed = media.resample(tone(10_000, t_in).astype(np.float32), 44100, 16000)  # above the new 8 kHz Nyquist
    assert np.sqrt(np.mean(removed[middle] ** 2)) < 1e-3
    assert np.array_equal(kept * media.PCM_SCALE, np.round(kept * media.PCM_SCALE))
    same = np.linspace(-1, 1, 100, dtype=np.float32)
    assert media.resample(same, 16000, 16000) is same  # nothing to do
