"""`avs predict` on videos: outputs, clip tiling, bad inputs, and no training engine imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avs.cli import main
from avs.data.errors import DataError
from avs.data.media import write_clip_video
from avs.predict import predict_video
from tests.conftest import write_model_folder


def write_video(path: Path, seconds: int, audio: bool = True, size: int = 48) -> Path:
    rng = np.random.default_rng(0)
    frames = (rng.random((seconds, size, size + 16, 3)) * 255).astype(np.uint8)
    if audio:
        tone = np.sin(2 * np.pi * 330 * np.arange(seconds * 16000) / 16000).astype(np.float32) * 0.3
        write_clip_video(path, frames, tone, fps=4)
    else:
        import av

        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=4)
            stream.width, stream.height, stream.pix_fmt = size + 16, size, "yuv420p"
            for image in frames:
                for _ in range(4):
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return write_model_folder(tmp_path_factory.mktemp("model") / "stamps")


def test_predict_writes_masks_overlay_and_summary(model_folder, tmp_path):
    import decord

    video = write_video(tmp_path / "in.mp4", seconds=7)
    out = tmp_path / "out"
    assert (
        main(
            [
                "--no-progress",
                "predict",
                str(video),
                "--model",
                str(model_folder),
                "--out",
                str(out),
                "--clip-seconds",
                "5",
            ]
        )
        == 0
    )
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 7  # clips cover seconds 0-4 and 2-6: every second once at least
    assert np.asarray(Image.open(masks[0])).shape == (48, 64)
    assert set(np.unique(np.asarray(Image.open(masks[0])))) <= {0, 255}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seconds"] == 7 and len(summary["per_second"]) == 7
    assert (summary["image_size"], summary["flip"], summary["guided_kernel"]) == (
        80,
        True,
        21,
    )  # the model's evaluate settings
    assert all(0 <= s["mean_uncertainty"] <= 1 for s in summary["per_second"])
    overlay = decord.VideoReader(str(out / "overlay.mp4"))
    assert len(overlay) == 7 * 4 and overlay[0].shape == (48, 128, 3)  # frame | uncertainty side by side
    audio = decord.AudioReader(str(out / "overlay.mp4"), sample_rate=16000, mono=True)
    assert audio.shape[1] >= 6.9 * 16000  # the original audio is kept


def test_predict_test_time_settings_can_be_overridden(model_folder, tmp_path):
    video = write_video(tmp_path / "in.mp4", seconds=5)
    args = ["--no-progress", "predict", str(video), "--model", str(model_folder), "--clip-seconds", "5"]
    assert main([*args, "--out", str(tmp_path / "a"), "--image-size", "64", "--no-flip", "--guided-kernel", "0"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert (summary["image_size"], summary["flip"], summary["guided_kernel"]) == (64, False, 0)
    assert np.asarray(Image.open(tmp_path / "a" / "masks" / "second_00000.png")).shape == (48, 64)  # source size
    with pytest.raises(ValueError, match="image_size must be at least 32"):
        predict_video(video, str(model_folder), tmp_path / "b", image_size=8, progress=False)
    with pytest.raises(ValueError, match="guided_kernel must be 0 .off. or odd"):
        predict_video(video, str(model_folder), tmp_path / "b", guided_kernel=4, progress=False)


def test_bad_videos_are_clear_errors(model_folder, tmp_path, capsys):
    silent_film = write_video(tmp_path / "no_audio.mp4", seconds=6, audio=False)
    with pytest.raises(DataError, match="no_audio.mp4.*no audio track"):
        predict_video(silent_film, str(model_folder), tmp_path / "a", progress=False)
    short = write_video(tmp_path / "short.mp4", seconds=3)
    with pytest.raises(DataError, match=r"short.mp4.*3 s long.*at least 5 s"):
        predict_video(short, str(model_folder), tmp_path / "b", progress=False)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    assert main(["predict", str(garbage), "--model", str(model_folder), "--out", str(tmp_path / "c")]) == 2
    assert "garbage.mp4" in capsys.readouterr().err
    assert main(["predict", str(short), "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_predict_does_not_import_the_training_engine():
    code = "import sys, avs.predict, avs.cli; sys.exit(1 if 'ray' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0
