"""A trained model on disk: `model.safetensors` + `config.json` (the resolved params).

The format the `train` stage exports to `models/<dataset>/` and the registry stores. Reading it
never unpickles anything: weights are safetensors and the config is JSON, validated by
`avs.config` like `params.yaml`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from avs.config import Config, ConfigError, config_from_dict
from avs.model.ravs import RAVS, build_model
from avs.model.weights import WeightsError, load_strict

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def read_model_config(folder: str | Path) -> Config:
    """The config a model folder was trained with."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(
            f"{path}: not found; a model folder holds {MODEL_FILE} and {CONFIG_FILE} "
            "(written by `avs train` to models/<dataset>/)"
        )
    try:
        return config_from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, ConfigError) as err:
        raise WeightsError(f"{path}: not a valid model config: {err}") from err


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[RAVS, Config]:
    """Build the model of a folder and load its weights strictly; returns it in eval mode."""
    folder = Path(folder)
    cfg = read_model_config(folder)
    # the trained weights replace the initial ones: do not require the ImageNet/VGGish files
    # (nor freeze an encoder that no longer names its weight file: this model is for inference)
    cfg = replace(cfg, model=replace(cfg.model, backbone_weights=None, audio_weights=None, freeze_audio=False))
    weights = folder / MODEL_FILE
    if not weights.is_file():
        raise WeightsError(f"{weights}: not found")
    model = build_model(cfg)
    load_strict(model, load_file(str(weights)), weights)
    return model.to(device).eval(), cfg


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, K, H, W) logits -> (B, T, H, W) probability that a pixel is sounding (any class)."""
    if logits.shape[2] == 1:
        return torch.sigmoid(logits[:, :, 0].float())
    return 1 - logits.float().softmax(2)[:, :, 0]


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, K, H, W) logits -> (B, T, max(K, 2), H, W) class probabilities (binary: background, sounding)."""
    if logits.shape[2] == 1:
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], 2)
    return logits.float().softmax(2)
