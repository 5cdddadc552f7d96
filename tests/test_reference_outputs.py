"""`avs predict` and the registered model give the outputs they gave before a refactor, on a fixed clip.

tests/data/reference_outputs.npz holds what the code of commit 2f897e3 produced for the same
seeded model and inputs (`python -m tests.test_reference_outputs OUT` writes them). A change
that alters the model's arithmetic, the test-time pipeline or the served wrapper fails here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

REFERENCE = Path(__file__).parent / "data" / "reference_outputs.npz"


def _model_folder(root: Path) -> Path:
    from tests.conftest import write_model_folder

    torch.manual_seed(1234)
    return write_model_folder(root / "model")


def _clip() -> tuple[np.ndarray, np.ndarray]:
    """(1, 3, 3, 48, 64) frames in [0, 1] and (1, 3, 16000) audio: smooth shapes and a tone in noise."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[:48, :64] / 64.0
    frames = np.stack([np.stack([np.sin(6 * x + t) * 0.5 + 0.5, y, (x + y + 0.3 * t) % 1.0]) for t in range(3)])
    frames = np.clip(frames + rng.normal(0, 0.02, frames.shape), 0, 1).astype(np.float32)[None]
    time = np.arange(3 * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * time) + 0.05 * rng.normal(size=time.shape)).astype(np.float32)
    return frames, audio.reshape(1, 3, 16000)


def current_outputs(root: Path) -> dict[str, np.ndarray]:
    """The served wrapper's outputs on the fixed clip and `avs predict`'s on a fixed video."""
    from avs.predict import predict_video
    from avs.track.pyfunc_model import SoundingObjectSegmenter
    from tests.test_predict import write_video

    folder = _model_folder(root)
    served = SoundingObjectSegmenter()
    served.load_context(SimpleNamespace(artifacts={"model": str(folder)}, model_config={}))
    frames, audio = _clip()
    outputs = served.predict(None, {"frames": frames, "audio": audio})
    video = write_video(root / "clip.mp4", seconds=5)
    summary = predict_video(video, str(folder), root / "predicted", clip_seconds=5, progress=False)
    masks = np.stack([np.asarray(Image.open(p)) for p in sorted((root / "predicted" / "masks").glob("*.png"))])
    return {
        "served_probability": outputs["probability"],
        "served_uncertainty": outputs["uncertainty"],
        "predict_sounding_share": np.array([s["sounding_share"] for s in summary["per_second"]]),
        "predict_mean_uncertainty": np.array([s["mean_uncertainty"] for s in summary["per_second"]]),
        "predict_masks": masks,
    }


def test_predict_and_the_served_model_give_the_reference_outputs(tmp_path):
    reference = np.load(REFERENCE)
    outputs = current_outputs(tmp_path)
    assert outputs["served_probability"].std() > 1e-3  # the reference is not a constant map
    np.testing.assert_allclose(outputs["served_probability"], reference["served_probability"], atol=2e-4)
    np.testing.assert_allclose(outputs["served_uncertainty"], reference["served_uncertainty"], atol=2e-4)
    np.testing.assert_allclose(outputs["predict_mean_uncertainty"], reference["predict_mean_uncertainty"], atol=2e-4)
    np.testing.assert_allclose(outputs["predict_sounding_share"], reference["predict_sounding_share"], atol=5e-3)
    assert (outputs["predict_masks"] == reference["predict_masks"]).mean() > 0.995


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        arrays = current_outputs(Path(scratch))
    np.savez_compressed(sys.argv[1], **arrays)
    print(json.dumps({k: [list(v.shape), float(v.mean())] for k, v in arrays.items()}))
