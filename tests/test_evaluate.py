"""The evaluate stage, the registry (register, promote, list, load by alias) and the MLflow server."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from avs.config import config_from_dict
from avs.paths import report_dir
from avs.track.registry import CHAMPION, RegistryError, list_versions, promote, register, resolve_model_folder
from tests.conftest import evaluate_and_log


def config(**registry):
    return config_from_dict(
        {
            "evaluate": {"batch_size": 3, "overlays": 2, "noise_snr_db": [10.0], "image_size": 72},
            "registry": {"model_name": "avs-test", "max_ece": 1.0, **registry},
        }
    )  # an untrained model


def test_evaluate_writes_metrics_plots_and_logs_to_mlflow(model_repo):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{model_repo / 'mlflow.db'}"
    metrics = evaluate_and_log(config(), model_repo, uri)
    written = json.loads((model_repo / "metrics" / "evaluate.json").read_text())
    for section in ("test", "robustness"):
        assert written[section] == pytest.approx(metrics[section], nan_ok=True)
    test, calibration, robustness = metrics["test"], metrics["calibration"], metrics["robustness"]
    assert metrics["clips"] > 0 and test["frames"] > 0
    assert metrics["protocol"] == {
        "image_size": 72,
        "flip": True,
        "guided_kernel": 21,
        "guided_eps": 1e-4,
    }  # the model was trained at 64 px
    for key in (
        "J",
        "F",
        "compat_J",
        "compat_F",
        "dataset_J",
        "dataset_F",
        "dataset_J&F",
        "s4_J",
        "ms3_J",
        "hard_J",
        "raw_J",
        "raw_F",
        "transition_J",
        "transition_F",
        "raw_transition_J",
        "raw_transition_F",
    ):
        assert 0.0 <= test[key] <= 1.0, key
    for name in ("final", "raw", "final_transition", "raw_transition"):
        row = calibration[name]
        assert 0.0 <= row["ece"] <= 1.0 and 0.0 <= row["brier"] <= 1.0 and row["nll"] >= 0 and row["pixels"] > 0
        assert 0.0 <= row["auroc_u"] <= 1.0  # the model has UE: u ranks errors
    assert calibration["final_transition"]["pixels"] < calibration["final"]["pixels"]
    for condition in ("clean", "muted", "swapped", "noise_10db", "visual_only_clean", "visual_only_muted"):
        assert 0.0 <= robustness[f"{condition}_J"] <= 1.0, condition
    assert robustness["clean_J"] == test["J"]
    attribution = metrics["attribution"]  # the stamps set has visible masks: hard frames always qualify
    assert attribution["hard_frames"] > 0 and 0.0 <= attribution["hard_pick_rate"] <= 1.0
    assert (
        0.0 <= attribution["hard_mixed_J"] <= 1.0 and 0.0 < attribution["hard_mixed_union_J"] < 1.0
    )  # a silent object is in view
    assert attribution["all_frames"] >= attribution["hard_frames"] + attribution.get("ms3_frames", 0)
    rows = list(csv.DictReader(open(model_repo / "metrics" / "robustness.csv")))
    assert [r["condition"] for r in rows] == ["clean", "muted", "swapped", "noise_10db"]
    assert len(list(csv.DictReader(open(model_repo / "metrics" / "reliability.csv")))) == 15
    reports = report_dir(config(), model_repo)
    assert (reports / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert 1 <= len(list((reports / "overlays").glob("*.png"))) <= 2  # spread over the subsets

    run_id = json.loads((reports / "mlflow.json").read_text())["run_id"]
    client = MlflowClient(uri)
    logged = client.get_run(run_id).data.metrics
    assert logged["test/J"] == pytest.approx(test["J"])
    assert client.get_run(run_id).data.tags["avs.test_time"] == "72 px, flip-averaged, guided filter 21 px"
    assert (
        "calibration/final/ece" in logged and "robustness/muted_J" in logged and "attribution/hard_pick_rate" in logged
    )
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/evaluate.json", "evaluation/reliability.png", "evaluation/overlays"} <= artifacts


def registry_round_trip(repo: Path, uri: str) -> None:
    """register -> promote (no champion) -> register again -> gate refuses -> lower margin passes."""
    import mlflow

    with pytest.raises(RegistryError, match="avs-test"):
        promote(config(), uri=uri)
    first = register(config(), repo, uri)
    assert first["version"] == "1" and float(first["tags"]["test_J"]) >= 0
    decision = promote(config(), uri=uri)
    assert decision.promoted and decision.version == "1" and "no champion" in decision.reason
    second = register(config(), repo, uri)
    assert second["version"] == "2"
    refused = promote(config(min_improvement=0.05), uri=uri)
    assert not refused.promoted and "below champion v1" in refused.reason
    assert "above registry.max_ece" in promote(config(max_ece=0.0), uri=uri).reason
    assert promote(config(), version="2", uri=uri).promoted
    versions = list_versions(config(), uri)
    assert [(v["version"], v["aliases"]) for v in versions] == [("2", [CHAMPION]), ("1", [])]

    folder = resolve_model_folder(f"models:/avs-test@{CHAMPION}", uri)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/avs-test@{CHAMPION}")
    out = model.predict(
        {
            "frames": np.random.rand(1, 2, 3, 64, 64).astype(np.float32),
            "audio": np.random.randn(1, 2, 16000).astype(np.float32) * 0.1,
        }
    )
    assert out["probability"].shape == out["uncertainty"].shape == (1, 2, 64, 64)
    assert model.model_config == {
        "image_size": 72,
        "flip": True,
        "guided_kernel": 21,
        "guided_eps": 1e-4,
    }  # as evaluate ran it
    assert ((0 <= out["probability"]) & (out["probability"] <= 1)).all()


def test_register_promote_and_load_by_alias(model_repo, capsys):
    from avs.cli import main

    uri = f"sqlite:///{model_repo / 'mlflow.db'}"
    with pytest.raises(RegistryError, match="evaluate"):
        register(config(), model_repo, uri)
    evaluate_and_log(config(), model_repo, uri)
    registry_round_trip(model_repo, uri)

    params = model_repo / "cli.yaml"
    params.write_text(
        json.dumps(
            {
                "registry": {"model_name": "avs-test", "min_improvement": 0.5, "max_ece": 1.0},
                "train": {"tracking_uri": uri},
            }
        )
    )
    capsys.readouterr()
    assert main(["--params", str(params), "promote", "--version", "1"]) == 3  # the gate refuses: exit 3
    assert "v1: not promoted: test J" in capsys.readouterr().out
    assert main(["--params", str(params), "models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[:2] == ["2", "champion"] and listing[2].split()[:2] == ["1", "-"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_evaluate_and_register_over_http_against_a_real_server(model_repo, tmp_path):
    from avs.track.server import start_server, stop_server

    port = free_port()
    server = start_server(tmp_path / "server", port)
    try:
        uri = f"http://127.0.0.1:{port}"
        evaluate_and_log(config(), model_repo, uri)
        registry_round_trip(model_repo, uri)
        assert (tmp_path / "server" / "mlflow.db").is_file()
        assert any((tmp_path / "server" / "artifacts").rglob("model.safetensors"))  # stored by the server
    finally:
        stop_server(server)
    assert server.poll() is not None


# Run in a fresh interpreter outside the checkout: `avs` may be imported only from the code the
# registered model ships (MLflow puts it on sys.path), never from this repository.
OUTSIDE_THE_CHECKOUT = """
import importlib.abc, importlib.machinery, sys
REPO, CHECKOUT_AVS = {repo!r}, {repo!r} + "/avs"
sys.path[:] = [p for p in sys.path if p and p.rstrip("/") != REPO]  # the venv under REPO stays

class NotFromTheCheckout(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] != "avs":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or (spec.origin or "").startswith(CHECKOUT_AVS):
            raise ModuleNotFoundError(f"{{name}} from the checkout is blocked")
        return spec

sys.meta_path.insert(0, NotFromTheCheckout())
try:
    import avs  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the checkout's avs is importable: the test would prove nothing")
import mlflow, numpy as np
mlflow.set_tracking_uri({uri!r})
model = mlflow.pyfunc.load_model("models:/avs-test@champion")
out = model.predict({{"frames": np.random.rand(1, 2, 3, 64, 64).astype(np.float32),
                      "audio": np.random.randn(1, 2, 16000).astype(np.float32) * 0.1}})
import avs
assert not avs.__file__.startswith(CHECKOUT_AVS), avs.__file__
print("OK", out["probability"].shape, out["uncertainty"].shape, avs.__file__)
"""


@pytest.mark.slow
def test_the_champion_loads_outside_the_checkout_and_serves_over_http(model_repo, tmp_path):
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import REPO

    uri = f"sqlite:///{model_repo / 'mlflow.db'}"
    evaluate_and_log(config(), model_repo, uri)
    register(config(), model_repo, uri)
    assert promote(config(), uri=uri).promoted
    script = OUTSIDE_THE_CHECKOUT.format(repo=str(REPO.resolve()), uri=uri)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK (1, 2, 64, 64) (1, 2, 64, 64)" in done.stdout

    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/avs-test@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env={**env, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = json.dumps(
            {
                "inputs": {
                    "frames": np.random.rand(1, 2, 3, 64, 64).tolist(),
                    "audio": (np.random.randn(1, 2, 16000) * 0.1).tolist(),
                }
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, server.communicate()[0][-3000:]
                assert time.monotonic() < deadline, "the model server did not answer"
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(30)
    predictions = answer["predictions"]
    assert np.asarray(predictions["probability"]).shape == (1, 2, 64, 64)
    assert np.asarray(predictions["uncertainty"]).shape == (1, 2, 64, 64)


def test_register_follows_the_tracking_uri_it_writes_to(model_repo):
    """Evaluated against one store, registered to another: the version's run is in the new store."""
    from mlflow.tracking import MlflowClient

    first, second = f"sqlite:///{model_repo / 'first.db'}", f"sqlite:///{model_repo / 'second.db'}"
    metrics = evaluate_and_log(config(), model_repo, first)
    record = register(config(), model_repo, second)
    assert record["version"] == "1"
    logged = MlflowClient(second).get_run(record["run_id"]).data.metrics
    assert logged["test/J"] == pytest.approx(metrics["test"]["J"])
    assert list_versions(config(), second)[0]["version"] == "1"
