"""The training run's name: what it covers decides when an interrupted stage resumes."""

from __future__ import annotations

import dataclasses

from avs.config import Config
from avs.train import run


def _manifest(sha: str = "a") -> dict:
    return {"splits": {"train": {"shards": [{"sha256": sha}]}}}


def test_the_name_follows_params_shards_and_code_not_where_it_runs(monkeypatch):
    cfg = Config()
    name = run.run_name(cfg, _manifest())
    assert name.startswith("stamps-") and name == run.run_name(cfg, _manifest())
    elsewhere = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, storage_path="s3://b/x", max_failures=5))
    assert run.run_name(elsewhere, _manifest()) == name
    assert run.run_name(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.01)), _manifest()) != name
    assert run.run_name(cfg, _manifest("b")) != name
    monkeypatch.setattr(run, "code_fingerprint", lambda: "other code")
    assert run.run_name(cfg, _manifest()) != name


def test_the_code_fingerprint_covers_the_model_and_the_loop(tmp_path, monkeypatch):
    package = tmp_path / "avs"
    for entry in run.RESULT_CODE:
        path = package / entry
        (path if path.suffix != ".py" else path.parent).mkdir(parents=True, exist_ok=True)
        (path / "x.py" if path.suffix != ".py" else path).write_text("a = 1\n")
    (package / "train" / "run.py").write_text("")
    monkeypatch.setattr(run, "__file__", str(package / "train" / "run.py"))
    before = run.code_fingerprint()
    (package / "predict.py").write_text("not training code\n")
    assert run.code_fingerprint() == before
    (package / "model" / "x.py").write_text('"""A docstring."""\n\na  =  1  # reformatted, with a comment\n')
    assert run.code_fingerprint() == before  # formatting, comments and docstrings are not code
    (package / "model" / "x.py").write_text("a = 2\n")
    assert run.code_fingerprint() != before
    assert len(run.code_fingerprint()) == 64


def _train_stage() -> dict:
    import yaml

    from tests.conftest import REPO

    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]


def test_the_fingerprinted_code_is_the_train_stages_code_deps():
    code_deps = {dep.removeprefix("avs/") for dep in _train_stage()["deps"] if dep.startswith("avs/")}
    assert code_deps == set(run.RESULT_CODE)


def test_the_train_stage_tracks_every_train_setting_but_where_it_runs():
    from avs.config import RUNTIME_SETTINGS, TrainConfig

    params = _train_stage()["params"]
    assert {"data", "model", "loss"} <= set(params) and "train" not in params
    tracked = {p.removeprefix("train.") for p in params if p.startswith("train.")}
    every = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RUNTIME_SETTINGS) <= every
    assert tracked == every - set(RUNTIME_SETTINGS)
