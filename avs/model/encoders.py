"""The visual encoder (METHOD.md, Encoders); the audio encoders are in `avs.model.audio`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from timm.models import FeatureListNet
from timm.models.efficientnet import EfficientNetFeatures
from torch import nn

from avs.model.weights import WeightsError, load_strict, read_state_dict

STAGE_STRIDES = (4, 8, 16, 32)


class VisualEncoder(nn.Module):
    """A timm backbone cut into its four stages (strides 4, 8, 16, 32).

    The stages are run one by one by the caller so that AMA can align each stage's output with
    the audio before the next stage sees it. Frames come in as floats in [0, 1] and are
    normalised with the backbone's own mean and std.
    """

    def __init__(
        self, *, stages: Sequence[nn.Module], channels: Sequence[int], mean: Sequence[float], std: Sequence[float]
    ):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(channels)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames - self.mean) / self.std

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Args: frames (N, 3, H, W) in [0, 1]. Returns: the four stages' features."""
        x = self.normalise(frames)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def build_visual_encoder(name: str, weights: str | Path | None = None) -> VisualEncoder:
    """Create a timm backbone (`features_only`, never fetched) and load local weights strictly.

    Args:
        name: a timm model name with stride-4/8/16/32 feature stages.
        weights: a local weight file with timm's key names (the full model's, classifier
            included or not), or None for random initialisation.
    """
    backbone = timm.create_model(name, features_only=True, pretrained=False)
    if weights is not None:
        _load_backbone_weights(backbone, name, Path(weights))
    stages, channels = _split_stages(backbone, name)
    cfg = backbone.pretrained_cfg
    return VisualEncoder(stages=stages, channels=channels, mean=cfg["mean"], std=cfg["std"])


def _split_stages(backbone: nn.Module, name: str) -> tuple[list[nn.Sequential], list[int]]:
    """Cut a timm feature extractor into sequential stages ending at strides 4, 8, 16, 32."""
    if isinstance(backbone, FeatureListNet):
        modules = list(backbone.items())  # (name, module) in execution order
        ends = dict(zip(backbone.return_layers, backbone.feature_info.reduction()))
    elif isinstance(backbone, EfficientNetFeatures):
        modules = [("conv_stem", backbone.conv_stem), ("bn1", backbone.bn1)]
        modules += [(f"blocks_{i}", block) for i, block in enumerate(backbone.blocks)]
        # `_stage_out_idx` maps s -> output index, for the output taken after block s - 1
        ends = {
            f"blocks_{s - 1}": backbone.feature_info.reduction()[i] for s, i in backbone._stage_out_idx.items() if s
        }
    else:
        raise ValueError(f"backbone {name}: timm feature class {type(backbone).__name__} is not supported")
    stages, strides, current = [], [], []
    for module_name, module in modules:
        current.append((module_name, module))
        stride = ends.get(module_name)
        if stride in STAGE_STRIDES:
            stages.append(nn.Sequential(OrderedDict(current)))
            strides.append(stride)
            current = []
    if tuple(strides) != STAGE_STRIDES:
        raise ValueError(f"backbone {name}: expected stages at strides {STAGE_STRIDES}, got {strides}")
    by_stride = dict(zip(backbone.feature_info.reduction(), backbone.feature_info.channels()))
    channels = [by_stride[stride] for stride in STAGE_STRIDES]
    return stages, channels


def _load_backbone_weights(backbone: nn.Module, name: str, path: Path) -> None:
    """Map a timm checkpoint's keys onto the feature extractor and load them strictly.

    timm's feature wrappers rename the top-level modules they flatten (`stages.0` becomes
    `stages_0`); keys of the full model that the extractor drops (the classifier head) are
    accepted and ignored, anything else that does not fit is an error listing the keys.
    """
    state = read_state_dict(path)
    own = backbone.state_dict()
    mapped, unknown = {}, []
    for key, tensor in state.items():
        flattened = key.replace(".", "_", 1)
        if key in own:
            mapped[key] = tensor
        elif flattened in own:
            mapped[flattened] = tensor
        else:
            unknown.append(key)
    full_model_keys = set(timm.create_model(name, pretrained=False).state_dict())
    head_keys = [k for k in unknown if k in full_model_keys]
    try:
        load_strict(backbone, {**mapped, **{k: state[k] for k in unknown}}, path, ignored=head_keys)
    except WeightsError as err:
        raise WeightsError(f"{err} (backbone {name})") from None
