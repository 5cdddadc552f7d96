"""Typed configuration: `params.yaml` mirrored as frozen dataclasses.

`load_config(path)` is the one way in. It rejects unknown keys, wrong types and out-of-range
values with a `ConfigError` that names the key and the expected form, e.g.
``params.yaml: preprocess.jpeg_quality: expected an int in [1, 100], got 150``.

Ranges and choices live next to each field (`field(metadata=...)` and `Literal`), so the
dataclasses stay the single description of what a valid configuration is.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DatasetName = Literal["stamps", "avsbench_s4", "avsbench_ms3", "avss", "vpo_ss", "vpo_ms", "vpo_msmi"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"min": lo, "max": hi}


@dataclass(frozen=True)
class DataConfig:
    """Which dataset the pipeline runs on, and where a real one lives on disk."""

    dataset: DatasetName = "stamps"
    # Root of a real dataset on local disk (required unless dataset == "stamps").
    root: str | None = None
    # VPO only: the VGGSound folder, whose audios/ holds the wavs named by the CSV's `vgg_file`
    # (None: <root>/VGGSound, as the release unpacks).
    audio_root: str | None = None
    # VPO only: mono sums the rows' wavs; stereo pans each by its `audio_pos` first (left
    # (1 - pos), right pos), as CAVP's vpo_stereo loaders.
    vpo_audio: Literal["mono", "stereo"] = "mono"
    # VPO only: binary (sounding or not) or semantic (the 21 VPO classes + background) masks.
    vpo_labels: Literal["binary", "semantic"] = "binary"
    # VPO only: the share of the release's `train` images held out as `val` (the release's
    # `val` is the test split), drawn with this seed.
    vpo_val_fraction: float = field(default=0.1, metadata=_range(0.0, 0.5))
    vpo_val_seed: int = 0
    # A real dataset with files missing is an error at fetch unless this is true; preprocess then
    # raises or skips those clips according to preprocess.on_error.
    allow_incomplete: bool = False


@dataclass(frozen=True)
class StampsClips:
    """Number of clips per subset of the embedded dataset (all splits together)."""

    s4: int = field(default=160, metadata=_range(3))
    ms3: int = field(default=160, metadata=_range(3))
    hard: int = field(default=120, metadata=_range(3))


@dataclass(frozen=True)
class StampsConfig:
    """The embedded dataset composed from Debian's tuxpaint-stamps-default."""

    seed: int = 0
    image_size: int = field(default=224, metadata=_range(32, 1024))
    num_frames: int = field(default=5, metadata=_range(1, 20))
    clips: StampsClips = field(default_factory=StampsClips)
    val_fraction: float = field(default=0.15, metadata=_range(0.0, 0.5))
    test_fraction: float = field(default=0.2, metadata=_range(0.0, 0.5))
    # Level of the background noise mixed into every second, in dB relative to full scale.
    noise_dbfs: float = field(default=-50.0, metadata=_range(-120.0, -20.0))
    # Level each sounding object's recording is normalised to (RMS, dBFS).
    source_dbfs: float = field(default=-20.0, metadata=_range(-60.0, -3.0))
    video_fps: int = field(default=4, metadata=_range(1, 30))
    # Where `make setup` puts tuxpaint-stamps-default_*.deb (relative to the repo root).
    deb_dir: str = ".cache/debs"
    # Where the .deb is unpacked (relative to the repo root).
    unpack_dir: str = ".cache/tuxpaint-stamps"


@dataclass(frozen=True)
class PreprocessConfig:
    """How source clips become Parquet shards."""

    # Frames and masks are resized to this square size; null keeps each source's own size.
    image_size: int | None = field(default=224, metadata=_range(32, 2048))
    jpeg_quality: int = field(default=90, metadata=_range(1, 100))
    shard_target_mb: float = field(default=16.0, metadata=_range(0.001, 4096.0))
    num_workers: int = field(default=2, metadata=_range(1, 256))
    # raise: stop at the first bad clip; skip: leave it out and list it in the manifest.
    on_error: Literal["raise", "skip"] = "raise"
    # Audio up to this many seconds shorter than the clip is padded with silence (and listed in
    # the manifest, as `padded_audio`); shorter still is a bad clip.
    max_audio_shortfall_s: float = field(default=1.0, metadata=_range(0.0, 60.0))


BackboneName = Literal["efficientnet_lite0", "tf_efficientnet_lite0", "resnet18", "resnet50", "pvt_v2_b0", "pvt_v2_b5"]


@dataclass(frozen=True)
class AMAConfig:
    """Audio-guided modality alignment (METHOD.md, AMA)."""

    enabled: bool = True
    # Encoder stages followed by AMA: 1 is the stride-4 stage, 4 the stride-32 one.
    stages: tuple[int, ...] = field(default=(1, 2, 3, 4), metadata=_range(1, 4))
    # P, the number of DPC-KNN groups after each of the four stages (indexed by stage).
    groups: tuple[int, ...] = field(default=(16, 16, 16, 16), metadata=_range(1, 256))
    knn: int = field(default=5, metadata=_range(1, 64))
    heads: int = field(default=8, metadata=_range(1, 64))
    # D, the width AMA's groups, attention and r_p work at; wider stages are projected to it, and a
    # stage narrower than D keeps its own width [ours].
    dim: int = field(default=256, metadata=_range(8, 4096))
    # [ours] Stages with more tokens than this find their group centres on an average-pooled
    # copy (DPC-KNN is quadratic in the token count); every full-resolution token then joins
    # its nearest centre (benchmarks/model_cost.py measures the cost).
    grouping_tokens: int = field(default=196, metadata=_range(16, 1_000_000))


@dataclass(frozen=True)
class UEConfig:
    """Uncertainty estimation (METHOD.md, UE)."""

    enabled: bool = True
    heads: int = field(default=4, metadata=_range(1, 64))
    # Length of the learned frame-position embedding: the longest clip the model accepts.
    max_frames: int = field(default=16, metadata=_range(1, 1024))


@dataclass(frozen=True)
class ModelConfig:
    """The RAVS model (METHOD.md): encoders, AMA, decoder, UE."""

    # ours: the model with the project's additions (the settings below); paper: exactly METHOD.md's
    # model, the additions switched off whatever they are set to (`PAPER_PROFILE`).
    profile: Literal["ours", "paper"] = "ours"
    backbone: BackboneName = "efficientnet_lite0"
    # Local weights for the backbone (.safetensors, or a .pt/.pth state dict), relative to the
    # repository root; null = random. The default file is written by the `weights` stage.
    backbone_weights: str | None = "data/weights/efficientnet_lite0.safetensors"
    # vggish: the published architecture; aisfx: the pretrained sound-effects CNN of the `aisfx`
    # wheel with its own front end (avs/model/audio.py).
    audio_encoder: Literal["vggish", "aisfx"] = "aisfx"
    # Local weights: VGGish in torchvggish's key layout (vggish), or an aisfx checkpoint
    # (aisfx; null = the one shipped in the installed wheel).
    audio_weights: str | None = None
    # Keep the audio encoder's weights (and batch-norm statistics) fixed: for a pretrained one [ours].
    freeze_audio: bool = True
    decoder_dim: int = field(default=128, metadata=_range(8, 2048))
    # Width of the audio-pixel similarity added to the mask logits [ours]: <W_a a, W_v x> per
    # pixel, a direct path for "which object does this sound belong to"; 0 turns it off.
    similarity_dim: int = field(default=64, metadata=_range(0, 2048))
    # Width of the refinement that redraws the mask at 1/2 scale from the frame's edges [ours]
    # (avs/model/refine.py); 0 keeps the 1/4-scale mask, upsampled.
    refine_dim: int = field(default=16, metadata=_range(0, 512))
    ama: AMAConfig = field(default_factory=AMAConfig)
    ue: UEConfig = field(default_factory=UEConfig)

    def __post_init__(self) -> None:
        stages = self.ama.stages
        if len(set(stages)) != len(stages) or list(stages) != sorted(stages):
            raise ConfigError(f"model.ama.stages: expected increasing distinct stages, got {list(stages)}")
        if len(self.ama.groups) != 4:
            raise ConfigError(f"model.ama.groups: expected one value per stage (4), got {list(self.ama.groups)}")
        if self.freeze_audio and self.audio_encoder != "aisfx" and self.audio_weights is None:
            raise ConfigError(
                f"model.freeze_audio: {self.audio_encoder} has no pretrained weights here (model.audio_weights is "
                "null), so freezing it would keep it at random initialisation; set model.freeze_audio: false "
                "or give model.audio_weights"
            )
        if self.decoder_dim % self.ue.heads:
            raise ConfigError(
                f"model.ue.heads: expected a divisor of model.decoder_dim ({self.decoder_dim}), got {self.ue.heads}"
            )


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (METHOD.md, Decoder and losses): L = L_seg + lambda_cst L_cst + lambda_unc L_unc."""

    # L_seg terms: binary masks use bce + dice + iou, AVSS uses ce + dice.
    bce: float = field(default=5.0, metadata=_range(0.0))
    dice: float = field(default=5.0, metadata=_range(0.0))
    iou: float = field(default=2.0, metadata=_range(0.0))
    ce: float = field(default=5.0, metadata=_range(0.0))
    lambda_cst: float = field(default=0.1, metadata=_range(0.0))
    lambda_unc: float = field(default=0.5, metadata=_range(0.0))
    cst_tau: float = field(default=0.07, metadata=_range(1e-4, 10.0))
    # response: the paper's rule, groups with r_p above their frame's mean r_p are positives;
    # mask: groups whose tokens are >= 50 % inside the ground truth (supervised ablation).
    cst_positives: Literal["response", "mask"] = "response"
    # The KL term's weight rises linearly from 0 to 1 over this many epochs.
    kl_anneal_epochs: float = field(default=10.0, metadata=_range(0.0))
    # [ours] L_seg on the mask head's raw logits m too, weighted by this (with UE on): the loss on
    # p' = (1 - u) sigmoid(m) alone does not lower m where u is high (p' is near 0 there whatever m is).
    seg_raw: float = field(default=1.0, metadata=_range(0.0))
    # [ours] InfoNCE pairing each sounding region with its audio (needs model.similarity_dim > 0).
    lambda_bind: float = field(default=1.0, metadata=_range(0.0))
    bind_tau: float = field(default=0.1, metadata=_range(1e-4, 10.0))


@dataclass(frozen=True)
class AugmentConfig:
    """Clip-consistent training augmentation (one draw per clip, applied to all its frames)."""

    # RandomResizedCrop's area range: the share of the frame each crop covers.
    crop_scale_min: float = field(default=0.5, metadata=_range(0.05, 1.0))
    crop_scale_max: float = field(default=1.0, metadata=_range(0.05, 1.0))
    horizontal_flip: bool = True
    # ColorJitter strength for brightness, contrast and saturation (frames only, never masks).
    color_jitter: float = field(default=0.2, metadata=_range(0.0, 1.0))
    # [ours] Chance that a clip's audio gets white noise, at an SNR drawn uniformly from
    # audio_noise_snr_db (low, high), per clip; the target stays: the object still sounds.
    audio_noise_p: float = field(default=0.3, metadata=_range(0.0, 1.0))
    audio_noise_snr_db: tuple[float, ...] = (0.0, 20.0)

    def __post_init__(self) -> None:
        if self.crop_scale_min > self.crop_scale_max:
            raise ConfigError(
                f"train.augment: crop_scale_min {self.crop_scale_min} is above crop_scale_max {self.crop_scale_max}"
            )
        low_high = self.audio_noise_snr_db
        if len(low_high) != 2 or low_high[0] > low_high[1]:
            raise ConfigError(
                f"train.augment.audio_noise_snr_db: expected [low, high] with low <= high, got {list(low_high)}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Ray Train: scale, optimisation, checkpoints and tracking."""

    epochs: int = field(default=10, metadata=_range(1, 10_000))
    batch_size: int = field(default=4, metadata=_range(1, 4096))  # clips per CPU worker and step
    batch_size_gpu: int = field(default=16, metadata=_range(1, 4096))  # clips per GPU worker and step
    image_size: int = field(default=128, metadata=_range(32, 2048))  # training and validation size
    lr: float = field(default=1e-3, metadata=_range(0.0, 1.0))
    backbone_lr_multiplier: float = field(default=1.0, metadata=_range(0.0, 10.0))
    weight_decay: float = field(default=0.05, metadata=_range(0.0, 1.0))
    warmup_epochs: float = field(default=1.0, metadata=_range(0.0, 10_000.0))
    grad_clip: float = field(default=1.0, metadata=_range(0.0))
    # Shuffle the training clips every epoch (seeded by `seed`): the shard files in a new order, and
    # each worker draws its batches at random from a buffer of `shuffle_buffer` decoded clips. The
    # train split's shards hold the clips in a seeded random order (preprocess), so files mix subsets.
    shuffle: bool = True
    shuffle_buffer: int = field(default=64, metadata=_range(1, 100_000))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    # Ray: workers, and whether each takes a GPU (bf16 autocast then).
    num_workers: int = field(default=1, metadata=_range(1, 4096))
    use_gpu: bool = False

    @property
    def worker_batch_size(self) -> int:
        """Clips per worker and step: `batch_size_gpu` when each worker has a GPU, else `batch_size`."""
        return self.batch_size_gpu if self.use_gpu else self.batch_size

    # Logical CPUs each worker reserves; the rest of the node's CPUs decode data in Ray Data.
    cpus_per_worker: int = field(default=1, metadata=_range(1, 1024))
    # Torch intra-op threads per worker; 0 = the node's cores divided among its workers.
    threads_per_worker: int = field(default=0, metadata=_range(0, 1024))
    # An existing cluster ("auto", "ray://host:10001", ...); null: RAY_ADDRESS, else a local instance.
    ray_address: str | None = None
    # Where Ray Train persists checkpoints: a local folder (relative to the repo) or a URI (s3://...).
    storage_path: str = "data/ray"
    max_failures: int = field(default=2, metadata=_range(-1, 1000))
    # Where every node reads the shards: a URI (s3://bucket/prefix, or any pyarrow filesystem) or a
    # shared mount, to which `train` publishes the local shards first; null: the local shard folder,
    # which only the machine that ran `preprocess` has (one machine, or a cluster sharing its disk).
    shards_uri: str | None = None
    # MLflow: a URI, or null for the embedded sqlite:///mlflow.db in the repo root (one machine only).
    tracking_uri: str | None = None
    experiment: str = "avs"


# The train settings that say where and how a run executes, not what it learns: they are not in
# the training run's name, nor in the train stage's DVC params (dvc.yaml lists the others).
RUNTIME_SETTINGS = (
    "ray_address",
    "storage_path",
    "max_failures",
    "cpus_per_worker",
    "threads_per_worker",
    "shards_uri",
    "tracking_uri",
    "experiment",
)


@dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate` stage: test metrics, calibration and the audio-reliance probes."""

    split: str = "test"
    batch_size: int = field(default=4, metadata=_range(1, 4096))  # clips per forward pass
    # The model runs on frames of this square size (None: `train.image_size`) and, with `flip`,
    # averages its outputs with those of the mirrored frames [ours] (avs/eval/inference.py).
    # Metrics are computed at this size. `avs predict` and the registered model do the same.
    image_size: int | None = field(default=176, metadata=_range(32, 2048))
    flip: bool = True
    # Guided filter of the mask probabilities with the frame as guide [ours]: window in pixels at
    # `image_size` (odd; 0 = off) and regulariser (in squared [0, 1] colour units).
    guided_kernel: int = field(default=21, metadata=_range(0, 255))
    guided_eps: float = field(default=1e-4, metadata=_range(1e-8, 1.0))
    noise_snr_db: tuple[float, ...] = (20.0, 10.0, 0.0)  # white noise mixed into the audio at these SNRs
    overlays: int = field(default=4, metadata=_range(0, 1000))  # clips drawn as frame / truth / prediction / u
    # Also report the scores as the papers' code computed them (compat_*, avss_compat_*): J and F
    # averaged per batch of `batch_size` clips as AVSBench's utility.py, and AVSS over all 71
    # classes with the padded frames scored, as avss/test.py.
    compat: bool = True
    # The per-dataset protocol (dataset_J/F): a class absent from truth and prediction is left
    # out of the mean (skip, DDESeg) or scores 0 and counts (zero, CAVP).
    absent_classes: Literal["skip", "zero"] = "skip"

    def __post_init__(self) -> None:
        if self.guided_kernel and (self.guided_kernel < 3 or self.guided_kernel % 2 == 0):
            raise ConfigError(
                "evaluate.guided_kernel: expected 0 (off) or an odd window of at least 3 pixels, "
                f"got {self.guided_kernel}"
            )


@dataclass(frozen=True)
class RegistryConfig:
    """The `register` stage and `avs promote`: MLflow model registry name and promotion gate."""

    model_name: str = "avs-stamps"
    # `avs promote` moves the champion alias only if the candidate's test J is at least the
    # current champion's plus this margin, and its ECE is at most max_ece.
    min_improvement: float = field(default=0.0, metadata=_range(-1.0, 1.0))
    max_ece: float = field(default=0.1, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class Config:
    """The whole of `params.yaml`."""

    data: DataConfig = field(default_factory=DataConfig)
    stamps: StampsConfig = field(default_factory=StampsConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    @property
    def num_classes(self) -> int:
        """Mask channels: 1 (binary: sounding or not), 71 (AVSS classes, background included) or
        22 (VPO's 21 classes and background, with `data.vpo_labels: semantic`)."""
        if self.data.dataset == "avss":
            return 71
        if self.data.dataset.startswith("vpo_") and self.data.vpo_labels == "semantic":
            return 22
        return 1

    def __post_init__(self) -> None:
        if self.data.dataset != "stamps" and not self.data.root:
            raise ConfigError(
                f"data.root: dataset '{self.data.dataset}' is a real dataset; set data.root "
                "to the local folder that holds it (see README, 'Real datasets')"
            )
        if self.stamps.val_fraction + self.stamps.test_fraction >= 0.9:
            raise ConfigError(
                "stamps.val_fraction + stamps.test_fraction: expected a sum below 0.9, got "
                f"{self.stamps.val_fraction + self.stamps.test_fraction:g}"
            )


def load_config(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read and validate `params.yaml`.

    Args:
        path: the YAML file.
        overrides: "dotted.key=value" settings applied on top (values parsed as YAML), as
            `avs --set train.num_workers=4` passes them; the same syntax as `dvc exp run -S`.

    Returns:
        The validated `Config`.

    Raises:
        ConfigError: naming the file, the dotted key and the expected form.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    for override in overrides:
        _apply_override(raw, override)
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override}: expected dotted.key=value, e.g. train.num_workers=4")
    *sections, leaf = key.strip().split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override}: {section} is not a section")
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {override}: the value is not valid YAML: {err}") from None


# What `model.profile: paper` switches off: every part that is in neither the paper nor METHOD.md.
# (section, key) -> value. The encoders stay the configured ones (no offline VGGish or PVT weights).
PAPER_PROFILE: dict[tuple[str, ...], Any] = {
    ("model", "similarity_dim"): 0,  # the audio-pixel similarity added to the mask logits
    ("model", "refine_dim"): 0,  # the mask refiner at 1/2 scale
    ("loss", "seg_raw"): 0.0,  # the second L_seg, on the raw logits m
    ("loss", "lambda_bind"): 0.0,  # the similarity's binding loss
    ("evaluate", "flip"): False,  # test-time averaging with the mirrored frames
    ("evaluate", "guided_kernel"): 0,  # the guided filter of the mask probabilities
}


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a `Config` from plain data (as parsed from YAML), validating everything, with
    `model.profile` resolved: the returned configuration holds the values the run uses."""
    return resolve_profile(_build(Config, raw, prefix=""))


def resolve_profile(cfg: Config) -> Config:
    """`cfg` with `PAPER_PROFILE` applied when `model.profile` is paper (unchanged otherwise)."""
    if cfg.model.profile != "paper":
        return cfg
    sections: dict[str, dict[str, Any]] = {}
    for (section, key), value in PAPER_PROFILE.items():
        sections.setdefault(section, {})[key] = value
    return dataclasses.replace(
        cfg, **{name: dataclasses.replace(getattr(cfg, name), **changes) for name, changes in sections.items()}
    )


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved configuration as plain data (for logging and manifests)."""
    return dataclasses.asdict(cfg)


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'top level'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of: {', '.join(sorted(fields))})")
    values = {name: _convert(hints[name], raw[name], fields[name], prefix + name) for name in raw}
    return cls(**values)


def _convert(hint: Any, value: Any, fld: dataclasses.Field, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: expected a value, got null")
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, fld, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key}: expected a non-empty list, got {value!r}")
        return tuple(_convert(args[0], item, fld, f"{key}[{i}]") for i, item in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected {_describe(hint, fld)}, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected {_describe(hint, fld)}, got {value!r}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    else:  # pragma: no cover - a field type this loader does not know is a programming error
        raise TypeError(f"{key}: unsupported field type {hint!r}")
    lo, hi = fld.metadata.get("min"), fld.metadata.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key}: expected {_describe(hint, fld)}, got {value!r}")
    return value


def _describe(hint: type, fld: dataclasses.Field) -> str:
    kind = "an int" if hint is int else "a number"
    lo, hi = fld.metadata.get("min"), fld.metadata.get("max")
    if lo is not None and hi is not None:
        return f"{kind} in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{kind} >= {lo:g}"
    if hi is not None:
        return f"{kind} <= {hi:g}"
    return kind
