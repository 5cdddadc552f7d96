"""Weights load from local files only, strictly; the packaged EfficientNet-Lite0 weights are real."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from avs.cli import main
from avs.model.audio import build_audio_encoder
from avs.model.encoders import build_visual_encoder
from avs.model.weights import WeightsError, convert_efficientnet_lite0, efficientnet_lite0_package_file, read_state_dict


@pytest.mark.parametrize("name", ["resnet18", "pvt_v2_b0", "efficientnet_lite0"])
def test_a_full_timm_checkpoint_loads_into_the_stages(tmp_path, name):
    torch.manual_seed(1)
    full = timm.create_model(name, pretrained=False)  # classifier included, timm's own key names
    path = tmp_path / "w.safetensors"
    save_file(full.state_dict(), str(path))
    encoder = build_visual_encoder(name, path).eval()
    frames = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        intermediates = full.eval().forward_intermediates(encoder.normalise(frames), intermediates_only=True)
        expected = [f for f in intermediates if f.shape[-1] <= 16]  # strides 4 to 32 of a 64 px input
        for got, want in zip(encoder(frames), expected, strict=True):
            assert torch.allclose(got, want, atol=1e-6)


def test_wrong_keys_and_shapes_are_listed(tmp_path):
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    cases = {
        "missing keys (1): layer1.0.conv1.weight": {k: v for k, v in state.items() if k != "layer1.0.conv1.weight"},
        "unexpected keys (1): extra.weight": {**state, "extra.weight": torch.zeros(1)},
        "wrong shapes (1): conv1.weight (file (1, 1), model (64, 3, 7, 7))": {
            **state,
            "conv1.weight": torch.zeros(1, 1),
        },
    }
    for message, bad in cases.items():
        path = tmp_path / "bad.safetensors"
        save_file(bad, str(path))
        with pytest.raises(WeightsError) as err:
            build_visual_encoder("resnet18", path)
        assert str(path) in str(err.value) and message in str(err.value)


def test_missing_unreadable_and_pickled_files_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="weight file not found"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt: not a readable weight file"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"conv.weight": torch.zeros(1), "hook": Image.new("L", (1, 1))}, tmp_path / "code.pt")
    with pytest.raises(WeightsError, match="code.pt: not a readable weight file"):
        read_state_dict(tmp_path / "code.pt")  # weights_only refuses arbitrary objects


def test_vggish_weights_load_strictly(tmp_path):
    torch.manual_seed(0)
    state = build_audio_encoder("vggish").network.state_dict()  # torchvggish layout
    torch.save({"state_dict": state}, tmp_path / "vggish.pt")
    loaded = build_audio_encoder("vggish", tmp_path / "vggish.pt")
    assert all(torch.equal(loaded.network.state_dict()[k], v) for k, v in state.items())
    state["features.0.weight"] = state["features.0.weight"][:16]
    torch.save({"state_dict": state}, tmp_path / "narrow.pt")
    with pytest.raises(WeightsError, match="wrong shapes"):
        build_audio_encoder("vggish", tmp_path / "narrow.pt")


def _classify(model: torch.nn.Module, image: np.ndarray) -> int:
    x = torch.tensor(np.asarray(Image.fromarray(image).resize((224, 224))), dtype=torch.float32).permute(2, 0, 1) / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    with torch.no_grad():
        return model(((x - mean[:, None, None]) / std[:, None, None])[None]).argmax().item()


def test_packaged_lite0_weights_are_real_imagenet_weights(tmp_path):
    out = tmp_path / "lite0.safetensors"
    assert main(["weights", str(out)]) == 0
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(read_state_dict(out))
    assert 281 <= _classify(model, data.chelsea()) <= 285  # ImageNet's domestic cat classes
    assert _classify(model, data.coffee()) == 967  # espresso
    # and the converted file loads into the feature stages
    build_visual_encoder("efficientnet_lite0", out)


def test_lite0_conversion_checks_shapes():
    state = read_state_dict(efficientnet_lite0_package_file())
    first = next(iter(state))
    with pytest.raises(WeightsError, match="does not match conv_stem.weight"):
        convert_efficientnet_lite0({**state, first: torch.zeros(1)})
