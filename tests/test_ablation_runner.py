"""experiments/ablation.py's runner: a failed run stops new ones from starting, the running ones finish."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("ablation", Path(__file__).parents[1] / "experiments/ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_run_starts_no_more_and_lets_the_running_one_finish(jobs):
    started, finished = [], []
    neighbour_running, failed = threading.Event(), threading.Event()

    def work(variant: str, seed: int) -> None:
        started.append((variant, seed))
        if variant == "baseline":
            if jobs > 1:
                assert neighbour_running.wait(5)  # fail while the other job is mid-run
            failed.set()
            raise SystemExit("ablation: baseline seed 0: `avs train` failed")
        neighbour_running.set()
        assert failed.wait(5)  # and outlive the failure
        finished.append((variant, seed))

    todo = [("baseline", 0), ("paper", 0), ("ours", 0), ("ama", 0)]
    with pytest.raises(SystemExit, match="baseline seed 0"):
        ablation.run_all(todo, jobs, work)
    assert sorted(started) == sorted(todo[:jobs])  # none started after the failure
    assert finished == todo[1:jobs]  # the running neighbour finished (and would have kept its result)


def test_every_run_is_made_once_when_none_fails():
    done = []
    ablation.run_all([("baseline", s) for s in range(5)], 2, lambda v, s: done.append((v, s)))
    assert sorted(done) == [("baseline", s) for s in range(5)]
