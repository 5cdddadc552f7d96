"""The RAVS model: shapes for every backbone and head, gradients, ablation switches, AMA and UE facts."""

from __future__ import annotations

import copy

import pytest
import torch

from avs.config import Config, config_from_dict
from avs.model import build_model, compute_losses
from avs.model.ama import AudioGuidedAlignment, group_tokens
from avs.model.dpc_knn import dpc_knn
from avs.model.ue import EvidentialHead, dirichlet_uncertainty, down_weighted_logits

BACKBONES = ["efficientnet_lite0", "tf_efficientnet_lite0", "resnet18", "pvt_v2_b0", "resnet50", "pvt_v2_b5"]


def tiny_config(**model) -> Config:
    """Small groups so that 64 px inputs (16 x 16 tokens at stride 4) still have enough tokens."""
    raw = {"model": {"backbone_weights": None, "ama": {"groups": [4, 4, 4, 2], "grouping_tokens": 64}, **model}}
    return config_from_dict(raw)


def run(cfg: Config, num_classes: int = 1, frames: int = 2, size: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    if num_classes > 1:
        cfg = config_from_dict({**_plain(cfg), "data": {"dataset": "avss", "root": "/unused"}})
    model = build_model(cfg)
    # timm's ResNets start each residual branch's last norm at zero (a trained one is not),
    # which would hide whether gradients reach the layers before it
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and not parameter.any():
                parameter.fill_(1.0)
    video = torch.rand(2, frames, 3, size, size)
    audio = torch.randn(2, frames, 16000) * 0.1
    outputs = model(video, audio)
    masks = torch.randint(0, max(2, num_classes), (2, frames, size, size))
    labelled = torch.ones(2, frames, dtype=torch.bool)
    return model, outputs, compute_losses(outputs, masks, labelled, cfg.loss, epoch=2.0)


def _plain(cfg: Config) -> dict:
    from avs.config import config_to_dict

    raw = config_to_dict(cfg)
    return {k: v for k, v in raw.items() if k != "data"}


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("num_classes", [1, 71])
def test_shapes_finite_and_gradients_everywhere(backbone, num_classes):
    model, outputs, losses = run(tiny_config(backbone=backbone), num_classes)
    assert outputs["logits"].shape == (2, 2, num_classes, 64, 64)
    assert outputs["uncertainty"].shape == (2, 2, 64, 64)
    assert outputs["evidence"].shape == (2, 2, max(2, num_classes), 64, 64)
    assert sorted(outputs["relevance"]) == [1, 2, 3, 4]
    assert outputs["relevance"][1].shape == (2, 2, 4)
    for name, value in outputs.items():
        if torch.is_tensor(value):
            assert torch.isfinite(value).all(), name
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    without = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert without == []


def test_a_trainable_audio_encoder_gets_gradients():
    model, _, losses = run(tiny_config(audio_encoder="vggish", freeze_audio=False))
    losses["total"].backward()
    audio = dict(model.audio.network.named_parameters())
    assert audio and all(p.grad is not None and p.grad.abs().sum() > 0 for p in audio.values())


def test_a_frozen_audio_encoder_keeps_its_weights_and_statistics():
    """The training engine freezes the encoder (`model.freeze_audio`); the built model is plain."""
    from avs.train.step import freeze_audio_encoder, set_training_mode

    torch.manual_seed(0)
    cfg = tiny_config()  # the default: aisfx, frozen
    model = build_model(cfg)
    assert all(p.requires_grad for p in model.audio.parameters())  # nothing frozen until the trainer says so
    cache = freeze_audio_encoder(model)
    set_training_mode(model, frozen_audio=True)
    assert model.training and model.decoder.training and not model.audio.training
    before = {k: v.clone() for k, v in model.audio.state_dict().items()}
    video, audio = torch.rand(2, 2, 3, 64, 64), torch.randn(2, 2, 16000) * 0.1
    masks, labelled = torch.randint(0, 2, (2, 2, 64, 64)), torch.ones(2, 2, dtype=torch.bool)
    for outputs in (model(video, audio), model(video, audio_embeddings=cache(audio))):
        compute_losses(outputs, masks, labelled, cfg.loss)["total"].backward()
    torch.optim.AdamW(model.parameters(), lr=1.0).step()
    assert all(torch.equal(before[k], v) for k, v in model.audio.state_dict().items())  # BN statistics too


def test_ablation_switches_give_the_four_variants():
    baseline, full = tiny_config(ama={"enabled": False}, ue={"enabled": False}), tiny_config()
    _, out, losses = run(baseline)
    assert out["uncertainty"] is None and out["relevance"] == {}
    assert torch.equal(out["logits"], out["mask_logits"])
    assert set(losses) == {"bce", "dice", "iou", "bind", "total"}  # the similarity is in every variant [ours]

    _, out, losses = run(full)
    assert set(losses) == {
        "bce",
        "dice",
        "iou",
        "cst",
        "unc",
        "seg_raw",
        "bind",
        "total",
    }  # seg_raw: only with UE [ours]
    u = out["uncertainty"][:, :, None]
    expected = (1 - u) * torch.sigmoid(out["mask_logits"])  # p' = (1 - u) sigmoid(m)
    assert torch.allclose(torch.sigmoid(out["logits"]), expected, atol=1e-6)

    _, _, losses = run(config_from_dict({**_plain(full), "loss": {"lambda_cst": 0.0}}))
    assert "cst" not in losses
    _, out, losses = run(tiny_config(ama={"enabled": False}))
    assert out["uncertainty"] is not None and "cst" not in losses
    _, out, losses = run(tiny_config(ue={"enabled": False}))
    assert out["uncertainty"] is None and "unc" not in losses and "seg_raw" not in losses and "cst" in losses


def test_similarity_switch_and_which_logits_it_raises(monkeypatch):
    _, out, losses = run(tiny_config(similarity_dim=0))
    assert out["binding"] is None and "bind" not in losses
    _, out, losses = run(config_from_dict({**_plain(tiny_config()), "loss": {"lambda_bind": 0.0}}))
    assert out["binding"] is not None and "bind" not in losses

    from avs.model.similarity import AudioPixelSimilarity

    cfg = config_from_dict(
        {**_plain(tiny_config(ue={"enabled": False})), "data": {"dataset": "avss", "root": "/unused"}}
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video, audio = torch.rand(1, 2, 3, 64, 64), torch.randn(1, 2, 16000) * 0.1
    logits = {}
    for value in (0.0, 5.0):
        monkeypatch.setattr(AudioPixelSimilarity, "forward", lambda self, a, p, v=value: torch.full_like(p[:, :1], v))
        logits[value] = model(video, audio)["logits"]
    raised = logits[5.0] - logits[0.0]
    assert torch.allclose(raised[:, :, 0], torch.zeros(()), atol=1e-5)  # background: untouched
    assert torch.allclose(raised[:, :, 1:], torch.full((), 5.0), atol=1e-4)  # every object class


def test_similarity_is_a_scaled_dot_product_per_pixel():
    from avs.model.similarity import AudioPixelSimilarity

    similarity = AudioPixelSimilarity(audio_dim=6, stage_channels=[3, 5, 7, 9], dim=4)
    features = [torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)]
    a, p = similarity.embed(features, torch.randn(2, 6))
    assert a.shape == (2, 4) and p.shape == (2, 4, 8, 8)
    expected = (a[1] * p[1, :, 3, 5]).sum() / 2  # 1 / sqrt(d)
    assert similarity(a, p)[1, 0, 3, 5].item() == pytest.approx(expected.item(), rel=1e-5)


def test_ama_on_chosen_stages_only():
    _, out, _ = run(tiny_config(ama={"stages": [3, 4]}))
    assert sorted(out["relevance"]) == [3, 4]


def test_uncertainty_is_in_unit_interval_and_one_without_evidence():
    evidence = torch.rand(3, 2, 8, 8) * 10
    alpha, u = dirichlet_uncertainty(evidence, dim=1)
    assert torch.equal(alpha, evidence + 1)
    assert ((u > 0) & (u <= 1)).all()
    _, u = dirichlet_uncertainty(torch.zeros(3, 71, 4, 4), dim=1)
    assert torch.equal(u, torch.ones(3, 4, 4))
    _, u = dirichlet_uncertainty(torch.full((1, 2, 1, 1), 1e6), dim=1)
    assert u.item() < 1e-5


def make_alignment(**kwargs) -> AudioGuidedAlignment:
    torch.manual_seed(0)
    kwargs = {"channels": 32, "dim": 32, **kwargs}
    return AudioGuidedAlignment(audio_dim=16, num_groups=6, num_heads=4, knn=5, grouping_tokens=64, **kwargs)


def test_zero_audio_gives_uniform_relevance():
    ama = make_alignment()
    out = ama(torch.randn(3, 32, 10, 10), torch.zeros(3, 16))
    assert torch.allclose(out.relevance, torch.full_like(out.relevance, 0.5))
    out = ama(torch.randn(3, 32, 10, 10), torch.randn(3, 16))
    assert out.relevance.std() > 1e-3


def test_groups_gather_only_their_own_tokens(monkeypatch):
    ama = make_alignment()
    features, audio = torch.randn(2, 32, 6, 6), torch.randn(2, 16)
    with torch.no_grad():
        out = ama(features, audio)
        # keep the grouping fixed, change one token: only the group it belongs to may change
        monkeypatch.setattr("avs.model.ama.group_tokens", lambda *args, **kwargs: out.assignment)
        changed = features.clone()
        changed[0, 3, 0, 0] += 1.0  # one channel: a shift of all channels would vanish in the LayerNorm
        again = ama(changed, audio)
    moved = (again.groups[0] - out.groups[0]).abs().sum(-1) > 1e-6
    assert moved.tolist() == [p == out.assignment[0, 0].item() for p in range(6)]
    assert torch.equal(again.groups[1], out.groups[1])


def test_compact_representation_is_a_relevance_weighted_mean_of_groups():
    out = make_alignment()(torch.randn(2, 32, 8, 8), torch.randn(2, 16))
    weights = torch.softmax(out.relevance.masked_fill(~out.occupied, float("-inf")), -1)
    assert torch.allclose(out.compact, (weights[..., None] * out.groups).sum(1), atol=1e-6)


def test_pooled_grouping_matches_dpc_knn_when_small_and_covers_every_token_when_large():
    tokens = torch.randn(4, 64, 16)
    assert torch.equal(group_tokens(tokens, (8, 8), 6, 5, max_tokens=64), dpc_knn(tokens, 6, 5).assignment)
    big = torch.randn(2, 56 * 56, 8)
    assignment = group_tokens(big, (56, 56), 16, 5, max_tokens=196)
    assert assignment.shape == (2, 56 * 56)
    assert assignment.min() >= 0 and assignment.max() < 16
    assert len(assignment[0].unique()) > 1


def test_unlabelled_frames_carry_no_segmentation_or_evidential_loss():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    outputs = model(torch.rand(1, 3, 3, 64, 64), torch.randn(1, 3, 16000) * 0.1)
    masks = torch.randint(0, 2, (1, 3, 64, 64))
    labelled = torch.tensor([[True, False, False]])
    first = compute_losses(outputs, masks, labelled, cfg.loss)
    masks[0, 1:] = 1 - masks[0, 1:]
    second = compute_losses(outputs, masks, labelled, cfg.loss)
    for name in ("bce", "dice", "iou", "unc"):
        assert torch.equal(first[name], second[name]), name
    none = compute_losses(outputs, masks, torch.zeros(1, 3, dtype=torch.bool), cfg.loss)
    assert none["bce"].item() == 0 and none["unc"].item() == 0 and "dice" not in none
    none["total"].backward()


def test_clip_longer_than_the_position_embedding_is_a_clear_error():
    model = build_model(tiny_config(ue={"max_frames": 2}))
    with pytest.raises(ValueError, match="max_frames"):
        model(torch.rand(1, 3, 3, 64, 64), torch.randn(1, 3, 16000) * 0.1)


def test_group_consolidation_equals_dense_masked_attention():
    ama = make_alignment()
    n, length, c, p, heads = 3, 40, 32, 6, 4
    q_groups, q_audio = torch.randn(n, p, c), torch.randn(n, c)
    keys, values = torch.randn(n, length, c), torch.randn(n, length, c)
    assignment = torch.randint(0, p - 1, (n, length))  # group p - 1 stays empty
    got = ama._consolidate(q_groups, q_audio, keys, values, assignment + torch.arange(n)[:, None] * p)

    def split(x):  # (N, L, C) -> (N, h, L, d)
        return x.unflatten(-1, (heads, -1)).transpose(1, 2)

    # softmax(G X^T / sqrt(d) + S) X with S_pi = <q_a, k_i> / sqrt(d), -inf outside group p
    logits = (split(q_groups) + split(q_audio[:, None])) @ split(keys).transpose(-1, -2) / (c // heads) ** 0.5
    outside = assignment[:, None, None, :] != torch.arange(p)[None, None, :, None]  # (N, 1, P, L)
    attention = torch.softmax(logits.masked_fill(outside, float("-inf")), -1).nan_to_num(0.0)
    expected = (attention @ split(values)).transpose(1, 2).flatten(2)
    assert torch.allclose(got, expected, atol=1e-5)
    assert got[:, -1].abs().sum() == 0

    # CUDA autocast runs exp in float32 while the linear layers give bfloat16 values (CPU
    # autocast keeps exp in bfloat16, so the model-level test below cannot see this mixing)
    mixed = ama._consolidate(q_groups, q_audio, keys, values.bfloat16(), assignment + torch.arange(n)[:, None] * p)
    assert torch.allclose(mixed.float(), expected, atol=0.05)


def test_bf16_autocast_forward_and_backward():
    # the GPU path trains under bf16 autocast; CPU autocast mixes dtypes in its own way (its op
    # lists differ from CUDA's: see the consolidation test above and benchmarks/gpu_epoch.py)
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(torch.rand(1, 2, 3, 64, 64), torch.randn(1, 2, 16000) * 0.1)
        losses = compute_losses(
            outputs, torch.randint(0, 2, (1, 2, 64, 64)), torch.ones(1, 2, dtype=torch.bool), cfg.loss
        )
    losses["total"].backward()
    assert torch.isfinite(losses["total"]) and torch.isfinite(outputs["uncertainty"]).all()


def test_refiner_starts_from_the_coarse_mask_and_reads_the_frame():
    from avs.model.refine import MaskRefiner

    torch.manual_seed(0)
    refiner = MaskRefiner(decoder_dim=8, num_classes=1, dim=4)
    image, features, coarse = torch.randn(2, 3, 32, 32), torch.randn(2, 8, 8, 8), torch.randn(2, 1, 8, 8)
    out = refiner(image, features, coarse)
    assert out.shape == (2, 1, 16, 16)
    upsampled = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, upsampled)  # zero-initialised correction: training starts from the coarse mask

    torch.nn.init.normal_(refiner.correction.weight)
    other_image = image.clone()
    other_image[0, :, :16] = 0  # an edge in the frame only
    moved = refiner(other_image, features, coarse) - refiner(image, features, coarse)
    assert moved[0].abs().max() > 0 and moved[1].abs().max() == 0


def test_refine_switch():
    _, out, _ = run(tiny_config(refine_dim=0))
    assert out["logits"].shape[-2:] == (64, 64)
    cfg = tiny_config(refine_dim=0)
    assert build_model(cfg).refiner is None and build_model(tiny_config()).refiner is not None


def test_built_in_channels_last_and_same_outputs_as_the_default_layout():
    """`build_model` returns NHWC convolution weights (faster); the layout must not change a result."""
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert all(p.is_contiguous() for p in plain.parameters())
    video, audio = torch.rand(2, 2, 3, 64, 64), torch.randn(2, 2, 16000) * 0.1
    with torch.no_grad():
        fast, reference = model(video, audio), plain(video, audio)
    for key in ("logits", "mask_logits", "uncertainty"):
        torch.testing.assert_close(fast[key], reference[key], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_temporal_attention_is_multi_head_attention_across_frames_at_each_pixel(layout):
    from avs.model.ue import TemporalAttention

    torch.manual_seed(0)
    b, t, c, h, w, heads = 2, 3, 16, 4, 5, 4
    attention = TemporalAttention(dim=c, num_heads=heads, max_frames=8)
    features = torch.randn(b * t, c, h, w).contiguous(memory_format=layout).unflatten(0, (b, t)).requires_grad_()
    got = attention(features)

    # the same weights in nn.MultiheadAttention, one sequence of T frames per (b, h, w)
    reference = torch.nn.MultiheadAttention(c, heads, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.qkv.weight)
        reference.in_proj_bias.copy_(attention.qkv.bias)
        reference.out_proj.weight.copy_(attention.out.weight)
        reference.out_proj.bias.copy_(attention.out.bias)
    x = features.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)  # (B*H*W, T, C)
    normed = attention.norm(x + attention.position[:t])
    expected = (
        (x + reference(normed, normed, normed, need_weights=False)[0]).reshape(b, h, w, t, c).permute(0, 3, 4, 1, 2)
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    weights = torch.randn_like(got)
    (grad,) = torch.autograd.grad((got * weights).sum(), features)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), features)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_narrow_group_norm_trains_in_nchw_and_infers_channels_last_with_the_same_values():
    from avs.model.decoder import GroupNorm

    torch.manual_seed(0)
    norm, plain = GroupNorm(4, 16), torch.nn.GroupNorm(4, 16)
    with torch.no_grad():
        for p in norm.parameters():
            p.normal_()
    plain.load_state_dict(norm.state_dict())
    x = torch.randn(3, 16, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    trained, expected = norm(x), plain(x)
    assert trained.is_contiguous() and not expected.is_contiguous()  # the copy to NCHW happened
    torch.testing.assert_close(trained, expected)
    weights = torch.randn(3, 16, 8, 8)
    grads = torch.autograd.grad((trained * weights).sum(), (x, norm.weight, norm.bias))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (x, plain.weight, plain.bias))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        inferred = norm(x)
    assert inferred.is_contiguous(memory_format=torch.channels_last)  # no copy without a graph
    torch.testing.assert_close(inferred, expected.detach())
    wide = GroupNorm(8, 64)(torch.randn(2, 64, 4, 4).contiguous(memory_format=torch.channels_last))
    assert not wide.is_contiguous()  # wide inputs stay channels-last


def test_a_pixel_with_high_uncertainty_changes_the_mask():
    """u -> 1 (no evidence) turns a confidently sounding pixel (m = 4) into background; with strong
    evidence p' stays sigmoid(m). Binary and AVSS (the removed mass goes to background)."""
    m = torch.full((1, 1, 1, 2, 1), 4.0)
    evidence = torch.zeros(1, 1, 2, 2, 1)  # (B, T, K_e, H, W): pixel 0 has no evidence (u = 1)
    evidence[0, 0, 1, 1, 0] = 1e4  # pixel 1: strong evidence for "sounding" (u ~ 0)
    p = torch.sigmoid(down_weighted_logits(m, evidence))[0, 0, 0, :, 0]
    assert torch.sigmoid(m).flatten()[0] > 0.5 and p[0] < 0.5  # the mask at 0.5 changes
    assert p[1].item() == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item(), rel=1e-3)

    classes = torch.tensor([-2.0, 3.0, 0.0]).view(1, 1, 3, 1, 1)  # class 1 wins
    for e, winner in ((torch.zeros(1, 1, 3, 1, 1), 0), (torch.full((1, 1, 3, 1, 1), 1e5), 1)):
        log_p = down_weighted_logits(classes, e)
        assert log_p.exp().sum(2).item() == pytest.approx(1.0, abs=1e-5)
        assert log_p.argmax(2).item() == winner
    log_p = down_weighted_logits(classes, torch.tensor([0.0, 4.0, 4.0]).view(1, 1, 3, 1, 1))  # u = 3 / 11
    q = classes.softmax(2).flatten()
    keep = 1 - 3 / 11
    expected = torch.stack([q[0] + (1 - keep) * (1 - q[0]), keep * q[1], keep * q[2]])
    assert torch.allclose(log_p.exp().flatten(), expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_down_weighting_stays_finite_at_the_extremes(dtype):
    m = torch.tensor([-80.0, -5.0, 0.0, 5.0, 80.0], dtype=dtype).view(1, 1, 1, 5, 1).expand(1, 1, 1, 5, 3)
    evidence = torch.tensor([0.0, 1e-20, 1e8], dtype=dtype).view(1, 1, 1, 1, 3).expand(1, 1, 2, 5, 3)
    for num_classes in (1, 3):
        logits = down_weighted_logits(m.expand(1, 1, num_classes, 5, 3).clone().requires_grad_(), evidence)
        assert torch.isfinite(logits).all()
    leaf = m.clone().float().requires_grad_()
    down_weighted_logits(leaf, evidence.float().requires_grad_()).sum().backward()
    assert torch.isfinite(leaf.grad).all()


def test_ue_temporal_attention_feeds_the_mask_head():
    """Changing one frame changes the other frame's raw mask logits m only through UE's temporal attention."""
    torch.manual_seed(0)
    cfg = tiny_config(similarity_dim=0, refine_dim=0)
    model = build_model(cfg).eval()
    video, audio = torch.rand(1, 2, 3, 64, 64), torch.randn(1, 2, 16000) * 0.1
    changed = video.clone()
    changed[0, 1] = torch.rand(3, 64, 64)
    with torch.no_grad():
        first, second = model(video, audio)["mask_logits"], model(changed, audio)["mask_logits"]
    assert not torch.allclose(first[0, 0], second[0, 0])
    no_ue = build_model(tiny_config(similarity_dim=0, refine_dim=0, ue={"enabled": False})).eval()
    with torch.no_grad():
        assert torch.allclose(no_ue(video, audio)["mask_logits"][0, 0], no_ue(changed, audio)["mask_logits"][0, 0])
    assert isinstance(model.uncertainty, EvidentialHead)


@pytest.mark.parametrize(("backbone", "width"), [("resnet50", 256), ("efficientnet_lite0", None)])
def test_ama_works_at_a_fixed_width(backbone, width):
    """`model.ama.dim`: wide stages are projected to D; a stage narrower than D keeps its width."""
    cfg = tiny_config(backbone=backbone, ama={"groups": [4, 4, 4, 2], "grouping_tokens": 64, "dim": 256})
    model, out, _ = run(cfg)
    channels = model.visual.channels
    for stage, aligned in out["alignments"].items():
        expected = min(256, channels[stage - 1])
        assert aligned.groups.shape[-1] == aligned.audio.shape[-1] == aligned.compact.shape[-1] == expected
        assert aligned.features.shape[1] == channels[stage - 1]
        module = model.alignments[str(stage)]
        assert isinstance(module.project, torch.nn.Linear) == (channels[stage - 1] > 256)
    if backbone == "resnet50":  # at C = 2048 AMA is no longer several times the backbone
        ama = sum(p.numel() for p in model.alignments.parameters())
        assert ama < 0.5 * sum(p.numel() for p in model.visual.parameters())


def test_paper_profile_is_exactly_the_methods_model():
    """`model.profile: paper` drops every part that is in neither the paper nor METHOD.md, whatever
    those parts are set to, and keeps the paper's loss terms only."""
    from avs.config import PAPER_PROFILE

    cfg = config_from_dict(
        {
            **_plain(tiny_config(similarity_dim=64, refine_dim=16)),
            "model": {**_plain(tiny_config())["model"], "profile": "paper", "similarity_dim": 64, "refine_dim": 16},
        }
    )
    for (section, key), value in PAPER_PROFILE.items():
        assert getattr(getattr(cfg, section), key) == value, (section, key)
    model, out, losses = run(cfg)
    assert model.similarity is None and model.refiner is None and out["binding"] is None
    assert {name.split(".")[0] for name, _ in model.named_children()} == {
        "visual",
        "audio",
        "alignments",
        "decoder",
        "audio_query",
        "compact_query",
        "mask_head",
        "uncertainty",
    }
    assert set(losses) == {"bce", "dice", "iou", "cst", "unc", "total"}
    assert run(tiny_config())[0].similarity is not None  # ours: the additions stay
