"""benchmarks/gpu_epoch.py on a CPU: the GPU benchmark keeps working where CI has no GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_epoch_benchmark_dry_run_on_cpu(stamps_repo, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "model": {"backbone_weights": None, "ama": {"groups": [4, 4, 4, 4]}},
                "train": {"image_size": 64, "batch_size": 2},
            }
        )
    )
    out = tmp_path / "results"
    subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_epoch.py",
            "--device",
            "cpu",
            "--params",
            str(params),
            "--shards",
            str(stamps_repo / "data" / "shards" / "stamps"),
            "--epoch-clips",
            "4",
            "--batch-sizes",
            "2",
            "--precisions",
            "fp32,bf16",
            "--learn-epochs",
            "1",
            "--results",
            str(out),
        ],
        cwd=REPO,
        check=True,
        timeout=600,
    )
    result = json.loads((out / "gpu_epoch.json").read_text())
    assert "errors" not in result
    assert result["decode"]["one_core_clips_per_s"] > 0 and result["decode"]["all_cores_clips_per_s"] > 0
    assert [(e["precision"], e["batch_size"], e["clips"]) for e in result["epochs"]] == [("fp32", 2, 4), ("bf16", 2, 4)]
    assert result["ddp"]["backend"] == "gloo" and 0 <= result["ddp"]["val_J"] <= 1
    for precision in ("bf16", "fp32"):
        (epoch,) = result["learning"][precision]
        assert epoch["loss"] > 0 and 0 <= epoch["val_J"] <= 1
    assert "## Learning" in (out / "gpu_epoch.md").read_text()
