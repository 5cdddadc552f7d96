"""Every published layout end to end: fetch -> preprocess -> one training step -> evaluate.

The fixtures follow the official loaders' rules (tests/layouts.py, ../shared/DATASETS.md). The
step is `train_step` on the shards' first batch, exported as `avs train` exports a model; one
layout (VPO-MS, stereo: several audio windows per frame) trains through Ray Train instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests import layouts

pytestmark = pytest.mark.slow

S4 = [("clipA", "dog", "train"), ("clipB", "baby", "val"), ("clipC", "dog", "test"), ("clipD", "baby", "test")]
MS3 = [("vid001", "train", False), ("vid002", "test", True), ("vid003", "val", False), ("vid004", "test", False)]
AVSS = [
    ("v1s", "uidS", "train", 5),
    ("v2", "uidT", "train", 10),
    ("v1m", "uidM", "val", 5),
    ("v2", "uidV", "test", 10),
    ("v1m", "uidN", "test", 5),
]
LAYOUTS = {
    "avsbench_s4": (lambda root: layouts.write_s4(root, clips=S4), {}),
    "avsbench_ms3": (lambda root: layouts.write_ms3(root, clips=MS3), {}),
    "avss": (lambda root: layouts.write_avss(root, clips=AVSS), {}),
    "vpo_ss": (lambda root: layouts.write_vpo(root, "ss"), {"vpo_val_fraction": 0.25}),
    "vpo_ms": (
        lambda root: layouts.write_vpo(root, "ms", stereo=True),
        {"vpo_val_fraction": 0.25, "vpo_audio": "stereo"},
    ),
    "vpo_msmi": (
        lambda root: layouts.write_vpo(root, "msmi", semantic=True),
        {"vpo_val_fraction": 0.25, "vpo_labels": "semantic"},
    ),
}


THROUGH_RAY = "vpo_ms"


def _one_training_step(cfg, repo: Path) -> dict[str, float]:
    """One `train_step` on the first training batch, then the model folder `avs train` writes."""
    import torch
    from safetensors.torch import save_file

    from avs.config import config_to_dict
    from avs.data.stream import max_frames, shard_files
    from avs.eval.evaluate import decoded_batches
    from avs.model import build_model
    from avs.paths import model_dir, shards_dir
    from avs.train.step import freeze_audio_encoder, make_optimizer, set_training_mode, train_step

    files = shard_files(shards_dir(cfg, repo), "train")
    batch = next(decoded_batches(files, cfg.train.image_size, max_frames(files), cfg.train.batch_size))
    model = build_model(cfg)
    cache = freeze_audio_encoder(model) if cfg.model.freeze_audio else None
    set_training_mode(model, cfg.model.freeze_audio)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    losses = train_step(model, batch, optimizer, scheduler, cfg, 0.0, use_bf16=False, where="step 0", audio_cache=cache)
    folder = model_dir(cfg, repo)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    (folder / "state.json").write_text(json.dumps({"epoch": 0, "metrics": {}, "run_id": None}))
    return {f"train/{k}": v.item() for k, v in losses.items()}


def _config(dataset: str, root: Path, repo: Path, data: dict):
    from avs.config import config_from_dict

    return config_from_dict(
        {
            "data": {"dataset": dataset, "root": str(root), **data},
            "preprocess": {"image_size": 48, "num_workers": 1},
            "model": {
                "backbone_weights": None,
                "decoder_dim": 16,
                "ama": {"groups": [4, 4, 4, 2], "grouping_tokens": 64},
            },
            "train": {
                "epochs": 1,
                "batch_size": 2,
                "image_size": 48,
                "num_workers": 1,
                "threads_per_worker": 1,
                "storage_path": str(repo / "ray"),
                "tracking_uri": f"sqlite:///{repo / 'mlflow.db'}",
            },
            "evaluate": {"image_size": 48, "batch_size": 2, "overlays": 1, "noise_snr_db": [10.0]},
        }
    )


@pytest.mark.parametrize("dataset", list(LAYOUTS))
def test_published_layout_trains_and_evaluates(dataset, tmp_path):
    from avs.data.stages import fetch, preprocess
    from avs.train.run import train
    from tests.conftest import evaluate_and_log

    write, data = LAYOUTS[dataset]
    expected = write(tmp_path / "release")
    repo = tmp_path / "repo"
    repo.mkdir()
    cfg = _config(dataset, tmp_path / "release", repo, data)
    index = fetch(cfg, repo, progress=False)
    assert sum(index["clips"].values()) == len(expected) and not index["missing"]
    manifest = preprocess(cfg, repo, progress=False)
    assert manifest["clips"] == len(expected) and not manifest["skipped"]
    assert all(manifest["splits"][split]["clips"] for split in ("train", "val", "test")), manifest["splits"]
    final = train(cfg, repo, progress=False) if dataset == THROUGH_RAY else _one_training_step(cfg, repo)
    assert math.isfinite(final["train/total"])
    metrics = evaluate_and_log(cfg, repo, f"sqlite:///{repo / 'mlflow.db'}")
    test = metrics["test"]
    assert test["frames"] == sum(sum(e.annotated) for e in expected.values() if e.split == "test")
    assert 0.0 <= test["J"] <= 1.0 and 0.0 <= test["dataset_J"] <= 1.0
    if dataset == "avss":  # the official form: all 71 classes, the v1m clip padded to 10 frames and scored
        assert 0.0 <= test["avss_compat_mIoU"] <= test["avss_mIoU"] <= 1.0
    else:
        assert 0.0 <= test["compat_J"] <= 1.0 and 0.0 <= test["compat_F"] <= 1.0
    if dataset == "vpo_msmi":
        assert json.loads((repo / "models" / dataset / "config.json").read_text())["data"]["vpo_labels"] == "semantic"
        assert "avss_mIoU" in test  # the semantic scores, over VPO's 22 classes
