"""Writing clip mp4s: the same bytes whatever SIMD code FFmpeg would pick on this CPU."""

from __future__ import annotations

import numpy as np

from avs.data.media import _pyav_libavutil, read_video_frames, rgb_to_yuv420p, write_clip_video

AVX2, FMA3, AVX512, AVX512ICL = 0x8000, 0x10000, 0x100000, 0x200000  # libavutil's AV_CPU_FLAG_*


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
    # with the audio muxed after the video, some writes came out different when four
    # processes wrote at once on two cores
    import multiprocessing

    folders = [tmp_path / str(i) for i in range(4)]
    for folder in folders:
        folder.mkdir()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        digests = set().union(*pool.map(_write_clip_copies, [(str(f), 30) for f in folders]))
    assert len(digests) == 1
