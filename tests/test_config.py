from pathlib import Path

import pytest

from avs.config import Config, ConfigError, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_load():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.data.dataset == "stamps"
    assert cfg.preprocess.image_size == 224
    assert cfg.stamps.clips.s4 > 0


def test_defaults_equal_params_yaml():
    # params.yaml states every default explicitly; the dataclasses must agree with it.
    assert load_config(REPO / "params.yaml") == Config()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"preprocess": {"jpeg_qualty": 90}}, "preprocess.jpeg_qualty: unknown key"),
        ({"trainz": {}}, "trainz: unknown key"),
        ({"preprocess": {"jpeg_quality": 150}}, "preprocess.jpeg_quality: expected an int in [1, 100], got 150"),
        ({"preprocess": {"jpeg_quality": "high"}}, "preprocess.jpeg_quality: expected an int in [1, 100]"),
        ({"preprocess": {"jpeg_quality": 90.5}}, "preprocess.jpeg_quality: expected an int"),
        ({"preprocess": {"on_error": "ignore"}}, "preprocess.on_error: expected one of raise, skip"),
        ({"stamps": {"clips": {"s4": 1}}}, "stamps.clips.s4: expected an int >= 3, got 1"),
        ({"stamps": {"val_fraction": -0.1}}, "stamps.val_fraction: expected a number in [0, 0.5]"),
        ({"stamps": {"clips": [1, 2]}}, "stamps.clips: expected a mapping"),
        ({"data": {"allow_incomplete": "yes"}}, "data.allow_incomplete: expected true or false"),
        ({"data": {"dataset": "avss"}}, "data.root: dataset 'avss' is a real dataset"),
        ({"stamps": {"image_size": None}}, "stamps.image_size: expected an int in [32, 1024], got None"),
        ({"model": {"audio_encoder": "vggish"}}, "model.freeze_audio: vggish has no pretrained weights here"),
        ({"model": {"audio_encoder": "wav2vec"}}, "model.audio_encoder: expected one of vggish, aisfx"),
    ],
)
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_nullable_and_float_from_int():
    cfg = config_from_dict({"preprocess": {"image_size": None, "shard_target_mb": 1}})
    assert cfg.preprocess.image_size is None
    assert cfg.preprocess.shard_target_mb == 1.0


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("preprocess:\n  num_workers: 0\n")
    with pytest.raises(ConfigError, match=r"params.yaml: preprocess.num_workers: expected an int in \[1, 256\], got 0"):
        load_config(bad)
    bad.write_text("preprocess: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_on_top_of_the_params_file(tmp_path):
    from avs.config import load_config

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 3\n")
    cfg = load_config(path, ["train.num_workers=4", "train.use_gpu=true", "model.ama.stages=[2, 3]"])
    assert (cfg.train.epochs, cfg.train.num_workers, cfg.train.use_gpu, cfg.model.ama.stages) == (3, 4, True, (2, 3))
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(path, ["train.epochs=zero"])
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(path, ["train.epochs"])
    with pytest.raises(ConfigError, match="train.no_such_key"):
        load_config(path, ["train.no_such_key=1"])
