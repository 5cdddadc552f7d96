"""Losses (METHOD.md): L = L_seg + lambda_cst L_cst + lambda_unc L_unc (+ seg_raw L_seg(m) and
lambda_bind L_bind [ours]), as a dict of named terms. L_seg scores the final probabilities p'
(UE's down-weighting, `outputs["logits"]`); `seg_raw` adds it on the raw logits m too.

Targets:
    masks     (B, T, H, W) long: 0/1 for binary data, class indices for AVSS; IGNORE marks
              pixels that carry no label (AVSS padding)
    labelled  (B, T) bool: the frame has a ground-truth mask (AVSBench S4 train annotates only
              its first frame); unlabelled frames contribute no segmentation or evidential loss
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avs.config import LossConfig
from avs.model.ama import Alignment

IGNORE = 255


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """BCE + Dice + IoU for binary logits (N, 1, H, W); CE + Dice for class logits (N, K, H, W).

    Dice and IoU are soft, per frame, then averaged over frames.
    """
    valid = (masks != IGNORE).float()  # (N, H, W)
    if logits.shape[1] == 1:
        target = (masks == 1).float()
        logit = logits[:, 0]
        bce = (F.binary_cross_entropy_with_logits(logit, target, reduction="none") * valid).sum() / valid.sum().clamp(
            min=1
        )
        prob = torch.sigmoid(logit) * valid
        inter = (prob * target).flatten(1).sum(1)
        total = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
        dice = 1 - (2 * inter + 1) / (total + 1)
        iou = 1 - (inter + 1) / (total - inter + 1)
        return {"bce": bce, "dice": dice.mean(), "iou": iou.mean()}
    ce = F.cross_entropy(logits, masks, ignore_index=IGNORE)
    prob = logits.softmax(dim=1) * valid[:, None]  # (N, K, H, W)
    target = (
        F.one_hot(masks.clamp(max=logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float() * valid[:, None]
    )
    inter = (prob * target).flatten(2).sum(2)  # (N, K)
    total = prob.flatten(2).sum(2) + target.flatten(2).sum(2)
    present = target.flatten(2).sum(2) > 0  # Dice over the classes present in each frame
    dice = (1 - (2 * inter + 1) / (total + 1))[present]
    return {"ce": ce, "dice": dice.mean() if dice.numel() else logits.sum() * 0}


def evidential_loss(evidence: torch.Tensor, masks: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Evidential cross-entropy (digamma form) + kl_weight * KL(Dir(alpha~) || Dir(1)), per pixel mean.

    Args:
        evidence: (N, K, H, W) >= 0.
        masks: (N, H, W) class indices (binary: 0/1), IGNORE where unlabelled.
    """
    k = evidence.shape[1]
    valid = masks != IGNORE
    alpha = (evidence + 1).permute(0, 2, 3, 1)[valid]  # (M, K)
    target = F.one_hot(masks[valid], k).to(alpha.dtype)  # (M, K)
    strength = alpha.sum(-1, keepdim=True)
    fit = (target * (torch.digamma(strength) - torch.digamma(alpha))).sum(-1)
    # KL of the Dirichlet with the target's evidence removed, against the uniform Dirichlet
    tilde = target + (1 - target) * alpha
    tilde_sum = tilde.sum(-1)
    kl = (
        torch.lgamma(tilde_sum)
        - torch.lgamma(torch.tensor(float(k), device=alpha.device))
        - torch.lgamma(tilde).sum(-1)
        + ((tilde - 1) * (torch.digamma(tilde) - torch.digamma(tilde_sum)[:, None])).sum(-1)
    )
    return (fit + kl_weight * kl).mean() if alpha.numel() else evidence.sum() * 0


def contrastive_loss(
    aligned: Alignment,
    positive: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """InfoNCE over one stage's groups: -log(sum_pos exp(cos(a, g)/tau) / sum_all exp(cos(a, g)/tau)).

    Args:
        aligned: the stage's AMA output (audio (N, D), groups (N, P, D), occupied (N, P)).
        positive: (N, P) bool positives; frames with no positive or no negative are skipped.
    """
    similarity = F.cosine_similarity(aligned.audio[:, None], aligned.groups, dim=-1) / tau  # (N, P)
    similarity = similarity.masked_fill(~aligned.occupied, float("-inf"))
    positive = positive & aligned.occupied
    negative = ~positive & aligned.occupied
    used = positive.any(dim=-1) & negative.any(dim=-1)
    if not used.any():
        return similarity.masked_fill(~aligned.occupied, 0).sum() * 0
    log_all = similarity[used].logsumexp(dim=-1)
    log_positive = similarity[used].masked_fill(~positive[used], float("-inf")).logsumexp(dim=-1)
    return (log_all - log_positive).mean()


def response_positives(aligned: Alignment) -> torch.Tensor:
    """Groups whose r_p is above their frame's mean r_p over its non-empty groups (`positives: response`).

    Relative to the frame (METHOD.md, AMA step 4): r_p starts near 0.5 everywhere, so any
    absolute threshold either takes every group or none. Chosen without gradient.
    """
    relevance = aligned.relevance.detach()
    occupied = aligned.occupied
    mean = (relevance * occupied).sum(-1, keepdim=True) / occupied.sum(-1, keepdim=True).clamp(min=1)
    return (relevance > mean) & occupied


def mask_positives(aligned: Alignment, masks: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Groups whose tokens lie >= 50 % inside the ground truth (`positives: mask`) on labelled frames.

    Args:
        masks: (N, H, W) targets; anything not background (and not IGNORE) counts as inside.
        labelled: (N,) bool.
    """
    height, width = aligned.features.shape[-2:]
    inside = ((masks > 0) & (masks != IGNORE)).float()[:, None]
    fraction = F.adaptive_avg_pool2d(inside, (height, width)).flatten(1)  # (N, L) share of each token inside
    member = F.one_hot(aligned.assignment, aligned.groups.shape[1]).float()  # (N, L, P)
    overlap = (member * fraction[..., None]).sum(1) / member.sum(1).clamp(min=1)  # (N, P)
    return (overlap >= 0.5) & labelled[:, None]


def relevance_gap(alignments: dict[int, Alignment], masks: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Mean r_p of groups on sounding objects minus mean r_p of the other groups (AMA's metric).

    Per stage, over the labelled frames that have groups of both kinds (`mask_positives` decides
    which groups are on the objects), then averaged over stages; NaN where no frame qualifies.

    Args:
        alignments: `RAVS.forward`'s AMA outputs; masks: (N, H, W); labelled: (N,) bool.
    """
    gaps = []
    for aligned in alignments.values():
        on_object = mask_positives(aligned, masks, labelled)
        elsewhere = aligned.occupied & ~on_object & labelled[:, None]
        both = on_object.any(-1) & elsewhere.any(-1)
        if not both.any():
            continue
        relevance = aligned.relevance.detach().float()[both]
        on, off = on_object[both].float(), elsewhere[both].float()
        gap = (relevance * on).sum(-1) / on.sum(-1) - (relevance * off).sum(-1) / off.sum(-1)
        gaps.append(gap.mean())
    return torch.stack(gaps).mean() if gaps else masks.new_tensor(float("nan"), dtype=torch.float32)


def binding_loss(
    audio: torch.Tensor,
    pixels: torch.Tensor,
    masks: torch.Tensor,
    labelled: torch.Tensor,
    clip: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """Which sound belongs to which pixels, stated outright on the similarity's projections [ours].

    The mean of two InfoNCE terms (cosines over `tau`), over labelled frames whose ground truth
    is not empty:
      across  each frame's sounding region (its pixels pooled over the ground truth) against
              the audio of the other clips' frames, and each audio against the other clips'
              regions (symmetric). Frames of the same clip are no negatives: the same object
              may sound in them.
      within  each frame's audio against every pixel of that frame, its sounding pixels the
              positives: the silent look-alike beside the sounding object is a negative here.
    The segmentation loss alone trained the similarity too weakly to tell look-alikes apart.

    Args:
        audio: (N, d), pixels: (N, d, h, w) the projections of `AudioPixelSimilarity.embed`.
        masks: (N, H, W) targets; anything not background (and not IGNORE) is sounding.
        labelled: (N,) bool.
        clip: (N,) which clip each frame belongs to.
    """
    inside = ((masks > 0) & (masks != IGNORE)).float()[:, None]
    inside = F.adaptive_avg_pool2d(inside, pixels.shape[-2:]).flatten(1)  # (N, h*w) share inside
    keep = labelled & (inside.sum(1) >= 1)  # at least one pixel's worth at the projections' scale
    if not keep.any():
        return pixels.sum() * 0
    audio, pixels = F.normalize(audio[keep], dim=-1), pixels[keep].flatten(2)  # (M, d), (M, d, h*w)
    inside, clip = inside[keep], clip[keep]
    weights = inside / inside.sum(1, keepdim=True)

    cosine = torch.einsum("md,mdl->ml", audio, F.normalize(pixels, dim=1)) / tau
    within = -(weights * cosine.log_softmax(1)).sum(1).mean()

    region = F.normalize(torch.einsum("mdl,ml->md", pixels, weights), dim=-1)  # (M, d)
    same_clip = clip[:, None] == clip[None, :]
    own = torch.eye(len(clip), dtype=torch.bool, device=clip.device)
    sim = (region @ audio.T / tau).masked_fill(same_clip & ~own, float("-inf"))  # (M, M)
    has_negative = (~same_clip).any(1)
    if not has_negative.any():  # one clip only: no other sound to tell apart
        return within
    target = torch.arange(len(clip), device=clip.device)
    across = (F.cross_entropy(sim, target, reduction="none") + F.cross_entropy(sim.T, target, reduction="none")) / 2
    return (across[has_negative].mean() + within) / 2


def compute_losses(
    outputs: dict,
    masks: torch.Tensor,
    labelled: torch.Tensor,
    cfg: LossConfig,
    epoch: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Every loss term (unweighted) plus `total`, their sum weighted by `cfg`. `seg_raw` is a whole
    L_seg (its parts weighted as for m'), on the raw logits m.

    Args:
        outputs: `RAVS.forward`'s dict.
        masks: (B, T, H, W) long targets.
        labelled: (B, T) bool frames with a ground-truth mask.
        cfg: the weights (`params.yaml: loss`).
        epoch: training progress in epochs (fractional), for the KL annealing.
    """
    logits = outputs["logits"]
    flat_masks, flat_labelled = masks.flatten(0, 1), labelled.flatten()
    targets = flat_masks[flat_labelled]  # (M, H, W) the annotated frames' masks, selected once
    any_labelled = bool(flat_labelled.any())
    if any_labelled:
        terms = segmentation_loss(logits.flatten(0, 1)[flat_labelled], targets)
    else:  # no annotated frame in the batch: zero loss that still reaches every logit
        terms = {"bce" if logits.shape[2] == 1 else "ce": logits.sum() * 0}
    weights = {"bce": cfg.bce, "dice": cfg.dice, "iou": cfg.iou, "ce": cfg.ce}

    def weighted(parts: dict[str, torch.Tensor]) -> torch.Tensor:  # L_seg from its named parts
        return sum(weights[name] * part for name, part in parts.items())

    total = weighted(terms)
    if outputs["evidence"] is not None and cfg.seg_raw > 0 and any_labelled:  # without UE, m' is m
        raw = segmentation_loss(outputs["mask_logits"].flatten(0, 1)[flat_labelled], targets)
        terms["seg_raw"] = weighted(raw)
        total = total + cfg.seg_raw * terms["seg_raw"]

    if outputs["alignments"] and cfg.lambda_cst > 0:
        per_stage = []
        for aligned in outputs["alignments"].values():
            if cfg.cst_positives == "response":
                positive = response_positives(aligned)
            else:
                positive = mask_positives(aligned, flat_masks, flat_labelled)
            per_stage.append(contrastive_loss(aligned, positive, cfg.cst_tau))
        terms["cst"] = torch.stack(per_stage).mean()
        total = total + cfg.lambda_cst * terms["cst"]

    if outputs["evidence"] is not None and cfg.lambda_unc > 0:
        kl_weight = min(1.0, epoch / cfg.kl_anneal_epochs) if cfg.kl_anneal_epochs > 0 else 1.0
        evidence = outputs["evidence"].flatten(0, 1)
        terms["unc"] = evidential_loss(evidence[flat_labelled], targets, kl_weight)
        total = total + cfg.lambda_unc * terms["unc"]
    if outputs.get("binding") is not None and cfg.lambda_bind > 0:
        clip = torch.arange(masks.shape[0], device=masks.device).repeat_interleave(masks.shape[1])
        terms["bind"] = binding_loss(*outputs["binding"], flat_masks, flat_labelled, clip, cfg.bind_tau)
        total = total + cfg.lambda_bind * terms["bind"]
    terms["total"] = total
    return terms
