"""Training checkpoints: safetensors weights, optimizer/scheduler tensors, JSON state; no pickled code.

A checkpoint folder holds
    model.safetensors   the model's weights (unwrapped from DDP)
    optimizer.pt        optimizer and scheduler state (tensors and numbers; read with weights_only=True)
    state.json          epoch, step, metrics, the resolved config
Written to a temporary folder and renamed into place, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from avs.model.weights import load_strict

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"


def write_checkpoint(
    folder: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    state: dict[str, Any],
) -> Path:
    """Write a checkpoint folder atomically (a sibling temp folder, then a rename)."""
    folder = Path(folder)
    scratch = folder.with_name(folder.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    save_file(weights, str(scratch / MODEL_FILE))
    if optimizer is not None:
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None},
            scratch / OPTIMIZER_FILE,
        )
    (scratch / STATE_FILE).write_text(json.dumps(state, indent=1, default=str) + "\n")
    for path in scratch.iterdir():  # data on disk before the rename makes it visible
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(folder, ignore_errors=True)
    scratch.rename(folder)
    return folder


def read_state(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / STATE_FILE).read_text())


def load_weights(model: nn.Module, folder: str | Path) -> None:
    """Load `model.safetensors` strictly into `model` (DDP-wrapped or not)."""
    path = Path(folder) / MODEL_FILE
    load_strict(unwrap(model), load_file(str(path)), path)


def load_training_state(folder: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    saved = torch.load(Path(folder) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
