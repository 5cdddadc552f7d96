"""Reading and writing clip media: video frames (decord), audio (decord / soundfile), mp4 (PyAV).

Every read failure becomes a `DataError` naming the file, so a bad clip is reported (or skipped
with `preprocess.on_error: skip`) instead of crashing a worker with a library traceback.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from avs.data.errors import DataError

SAMPLE_RATE = 16_000
AUDIO_FILE_SUFFIXES = {".wav", ".ogg", ".flac"}
PCM_SCALE = 32768.0  # 16-bit PCM: the shards' audio and resampled audio are multiples of 1 / PCM_SCALE
# The embedded set must come out byte-identical on every machine and in every run.
# - One thread: x264's output depends on its thread count, which it takes from the CPUs it may use.
# - No macroblock-tree rate control (mbtree=0): with it, x264's AVX-512 code made the output depend
#   on what the process had encoded before, and differ from its AVX2 code. Without it, SSSE3, AVX2
#   and AVX-512 give the same bytes in any order (tests/test_media.py); only plain SSE2 and C differ.
X264_OPTIONS = {"crf": "17", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
# Silence below this peak amplitude (about -80 dBFS) counts as "no signal at all".
SILENT_PEAK = 1e-4


def read_image(path: Path) -> np.ndarray:
    """An RGB image as (H, W, 3) uint8."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except OSError as err:
        raise DataError(path, f"cannot decode image: {err}") from None


def read_png_values(path: Path) -> np.ndarray:
    """The raw stored values of a mask PNG: (H, W) uint8 indices, or (H, W, 3) for RGB."""
    try:
        with Image.open(path) as img:
            if img.mode in ("RGB", "RGBA"):
                return np.asarray(img.convert("RGB"))
            if img.mode in ("P", "L", "1"):
                return np.asarray(img).astype(np.uint8)
            if img.mode in ("I", "I;16", "LA"):
                return np.asarray(img.convert("L"))
            raise DataError(path, f"unsupported mask PNG mode {img.mode}")
    except FileNotFoundError:
        raise DataError(path, "mask file not found") from None
    except OSError as err:
        raise DataError(path, f"cannot decode mask: {err}") from None


def read_video_frames(path: Path, num_frames: int) -> np.ndarray:
    """The frame at the middle of each of the first `num_frames` seconds.

    Returns:
        (T, H, W, 3) uint8 RGB.
    """
    import decord

    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        fps = float(reader.get_avg_fps())
        length = len(reader)
    except FileNotFoundError:
        raise DataError(path, "video file not found") from None
    except (RuntimeError, decord.DECORDError) as err:
        raise DataError(path, f"cannot open video (corrupt or truncated?): {_first_line(err)}") from None
    if fps <= 0 or length == 0:
        raise DataError(path, "video has no frames")
    duration = length / fps
    if duration + 0.5 / fps < num_frames:
        raise DataError(path, f"video is {duration:.2f} s long; {num_frames} s are needed")
    indices = [min(int((t + 0.5) * fps), length - 1) for t in range(num_frames)]
    try:
        frames = reader.get_batch(indices).asnumpy()
    except (RuntimeError, decord.DECORDError):
        frames = None
    if frames is None or frames.ndim != 4 or frames.shape[-1] != 3:
        # decord mis-sizes some small frames (e.g. 48 x 48); PyAV decodes them correctly.
        frames = _read_frames_pyav(path, indices)
    return frames


def _read_frames_pyav(path: Path, indices: list[int]) -> np.ndarray:
    import av

    wanted, frames = set(indices), {}
    try:
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    frames[index] = frame.to_ndarray(format="rgb24")
                if index >= max(indices):
                    break
    except av.FFmpegError as err:
        raise DataError(path, f"cannot decode video frames (truncated?): {err}") from None
    if len(frames) < len(wanted):
        raise DataError(path, f"video ends after {len(frames)} of the frames needed (truncated?)")
    return np.stack([frames[i] for i in indices])


def read_audio(path: Path, sample_rate: int = SAMPLE_RATE, allow_silent: bool = False) -> np.ndarray:
    """Mono float32 audio at `sample_rate`, from an audio file or a video's audio track.

    Raises:
        DataError: the file is missing, unreadable, has no audio track or (unless
            `allow_silent`) is silent throughout.
    """
    if not Path(path).is_file():
        raise DataError(path, "audio file not found")
    if Path(path).suffix.lower() in AUDIO_FILE_SUFFIXES:
        waveform = _read_audio_file(path, sample_rate)
    else:
        waveform = _read_audio_track(path, sample_rate)
    if waveform.size == 0:
        raise DataError(path, "audio track is empty")
    if not allow_silent and float(np.abs(waveform).max()) < SILENT_PEAK:
        raise DataError(path, "audio track is silent throughout")
    return waveform


def _read_audio_file(path: Path, sample_rate: int) -> np.ndarray:
    import soundfile

    try:
        data, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DataError(path, f"cannot decode audio: {err}") from None
    return resample(data.mean(axis=1), source_rate, sample_rate)


def _read_audio_track(path: Path, sample_rate: int) -> np.ndarray:
    import decord

    try:
        reader = decord.AudioReader(str(path), sample_rate=sample_rate, mono=True)
        return reader[:].asnumpy().reshape(-1).astype(np.float32)
    except (RuntimeError, decord.DECORDError) as err:
        message = _first_line(err)
        if "find audio stream" in message:
            raise DataError(path, "video has no audio track") from None
        raise DataError(path, f"cannot decode audio track: {message}") from None


def resample(waveform: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling of a mono waveform, giving the same samples on any CPU.

    scipy's polyphase filter runs in float64 with plain loops (no BLAS, no SIMD picked by the
    CPU), and the result is rounded to the 16-bit grid, so that a last-bit difference of float
    arithmetic cannot reach the samples. torchaudio's resampler, used until 2026-12-01, ran
    through oneDNN's CPU-specific kernels: forcing lower levels on one machine
    (`ONEDNN_MAX_CPU_ISA=SSE41`, `ATEN_CPU_CAPABILITY=default`) changed 69 of the embedded set's
    78 recordings and 112 of its 440 mp4s.
    """
    if source_rate == target_rate:
        return waveform.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    divisor = math.gcd(int(source_rate), int(target_rate))
    out = resample_poly(np.asarray(waveform, np.float64), int(target_rate) // divisor, int(source_rate) // divisor)
    return (np.round(out * PCM_SCALE) / PCM_SCALE).astype(np.float32)


def write_clip_video(
    path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int = SAMPLE_RATE
) -> None:
    """Write an H.264 + AAC mp4 in which frame t is shown throughout second t.

    Args:
        path: the mp4 to write (its parent must exist).
        frames: (T, H, W, 3) uint8, one image per second; H and W must be even.
        audio: (N,) float32 mono in [-1, 1].
        fps: video frame rate; each image is repeated `fps` times.
        sample_rate: audio sample rate.
    """
    import av

    height, width = frames.shape[1:3]
    with _plain_ffmpeg(), av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = dict(X264_OPTIONS)
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
        # The whole (short) audio track is muxed first, then the video.
        chunk = av.AudioFrame.from_ndarray(
            np.clip(audio, -1.0, 1.0).astype(np.float32)[None, :], format="fltp", layout="mono"
        )
        chunk.sample_rate = sample_rate
        # An explicit pts lets the muxer write an edit list for the AAC encoder's priming
        # samples, so readers (decord included) return audio aligned with the video.
        chunk.pts, chunk.time_base = 0, Fraction(1, sample_rate)
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
        for second, image in enumerate(frames):
            planes = rgb_to_yuv420p(image)
            for repeat in range(fps):
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame.pts, frame.time_base = second * fps + repeat, Fraction(1, fps)
                container.mux(video.encode(frame))
        container.mux(video.encode())


@lru_cache(maxsize=1)
def _pyav_libavutil() -> ctypes.CDLL | None:
    """The libavutil that PyAV's wheel bundles (av.libs/), or None where PyAV uses another."""
    import av

    found = sorted((Path(av.__file__).parent.parent / "av.libs").glob("libavutil-*.so*"))
    return ctypes.CDLL(str(found[0])) if found else None


@contextmanager
def _plain_ffmpeg() -> Iterator[None]:
    """Run FFmpeg's plain C code, not the SIMD code it picks for this CPU (`ffmpeg -cpuflags 0`).

    FFmpeg's AAC encoder computes in floats and gave other bytes for the same audio under each
    SIMD level forced on one machine, as another CPU would pick (tests/test_media.py). x264 has its
    own CPU detection and is not touched by this (see `X264_OPTIONS`). Where PyAV does not use
    its bundled FFmpeg this does nothing.
    """
    library = _pyav_libavutil()
    if library is None:
        yield
        return
    previous = library.av_get_cpu_flags()
    library.av_force_cpu_flags(0)
    try:
        yield
    finally:
        library.av_force_cpu_flags(previous)


def rgb_to_yuv420p(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H * 3 / 2, W) uint8 planar YUV 4:2:0 (BT.601, limited range), in integers.

    FFmpeg's own conversion (swscale) picks SIMD code by the CPU, and its results are not
    guaranteed to agree between SIMD levels; integers give the same planes everywhere, whatever
    FFmpeg's settings. Chroma is the rounded mean of each 2x2 block.
    """
    r, g, b = (image[..., c].astype(np.int32) for c in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128
    height, width = y.shape

    def subsample(plane: np.ndarray) -> np.ndarray:
        blocks = plane.reshape(height // 2, 2, width // 2, 2).sum(axis=(1, 3))
        return ((blocks + 2) >> 2).reshape(height // 4, width)  # two half-width rows per line of the layout

    return np.concatenate([y, subsample(u), subsample(v)]).astype(np.uint8)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
