"""`avs fetch` / `avs preprocess` on a real-layout dataset, and their errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from avs.cli import main
from tests import layouts


def _params(tmp_path: Path, **data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": data, "preprocess": {"image_size": None, "num_workers": 1}}))
    return path


def test_fetch_indexes_a_real_dataset_then_preprocess_shards_it(tmp_path, capsys, monkeypatch):
    layouts.write_s4(tmp_path / "AVSBench")
    params = _params(tmp_path, dataset="avsbench_s4", root=str(tmp_path / "AVSBench"))
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(params), "--no-progress", "fetch"]) == 0
    index = json.loads((tmp_path / "data/raw/avsbench_s4/index.json").read_text())
    assert index["clips"] == {"train": 1, "val": 1, "test": 1} and index["missing"] == []
    assert main(["--params", str(params), "--no-progress", "preprocess"]) == 0
    out = capsys.readouterr().out
    assert "avsbench_s4: 3 clips" in out
    assert main(["shards", "data/shards/avsbench_s4"]) == 0


def test_incomplete_dataset_is_refused_with_the_missing_files(tmp_path, capsys, monkeypatch):
    layouts.write_s4(tmp_path / "AVSBench")
    os.remove(tmp_path / "AVSBench/s4_data/audio_wav/val/baby/clipB.wav")
    params = _params(tmp_path, dataset="avsbench_s4", root=str(tmp_path / "AVSBench"))
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(params), "fetch"]) == 2
    err = capsys.readouterr().err
    assert "incomplete avsbench_s4: 1 files named by the metadata are missing" in err
    assert "clipB.wav  (named by s4_meta_data.csv line 3)" in err
    assert not (tmp_path / "data/raw/avsbench_s4/index.json").exists()


def test_bad_params_and_missing_root(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(_params(tmp_path, dataset="avss")), "fetch"]) == 2
    assert "data.root: dataset 'avss' is a real dataset" in capsys.readouterr().err
    assert main(["--params", str(_params(tmp_path, dataset="avss", root="/no/such/dir")), "fetch"]) == 2
    assert "/no/such/dir: dataset folder not found" in capsys.readouterr().err
    assert main(["--params", str(_params(tmp_path, dataset="avsbench_ms3", root=str(tmp_path))), "preprocess"]) == 2
    assert "index.json: not found: run the fetch stage first" in capsys.readouterr().err
