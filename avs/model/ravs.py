"""RAVS: the assembled model (METHOD.md) and `build_model(cfg)`, the one place it is wired."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from avs.config import Config
from avs.model.ama import Alignment, AudioGuidedAlignment
from avs.model.audio import AudioEncoder, build_audio_encoder
from avs.model.decoder import FPNDecoder, conv_norm_act
from avs.model.encoders import VisualEncoder, build_visual_encoder
from avs.model.refine import MaskRefiner
from avs.model.similarity import AudioPixelSimilarity
from avs.model.ue import EvidentialHead, dirichlet_uncertainty, down_weighted_logits


class RAVS(nn.Module):
    """Encoders with AMA after chosen stages, an FPN decoder with an audio query, an audio-pixel
    similarity added to the mask logits [ours], a refinement of the mask at 1/2 scale [ours], and UE.

    With UE, the decoder's features pass its temporal attention before both the mask head and
    the evidential head, and the final probabilities are p' (`down_weighted_logits`): the
    sounding mass times (1 - u).

    `forward` returns a dict:
        logits       (B, T, K, H, W) logits of the final probabilities p' (m when UE is off):
                     binary logit(p'), AVSS log p'; K = 1 (binary: sounding) or the number of
                     classes (AVSS: 71)
        mask_logits  (B, T, K, H, W) m: the mask head's logits plus the audio-pixel similarity
        uncertainty  (B, T, H, W) u = K_e / S in (0, 1], or None when UE is off
        evidence     (B, T, K_e, H, W) Dirichlet evidence (K_e = 2 for binary), or None
        relevance    {stage: (B, T, P)} AMA audio relevances r_p
        alignments   {stage: Alignment} the contrastive loss's inputs (frames flattened: B*T)
        binding      (audio (B*T, d), pixels (B*T, d, H/4, W/4)) the audio-pixel similarity's
                     projections (the binding loss's inputs), or None when it is off
    """

    def __init__(
        self,
        *,
        visual: VisualEncoder,
        audio: AudioEncoder,
        alignments: Mapping[int, AudioGuidedAlignment],
        decoder: FPNDecoder,
        decoder_dim: int,
        num_classes: int,
        uncertainty: EvidentialHead | None,
        similarity: AudioPixelSimilarity | None = None,
        refiner: MaskRefiner | None = None,
    ):
        super().__init__()
        self.visual = visual
        self.audio = audio
        self.alignments = nn.ModuleDict({str(stage): module for stage, module in alignments.items()})
        self.decoder = decoder
        # The audio query modulating the pixel features: the audio embedding plus every AMA
        # stage's compact representation z, each projected to the decoder's width.
        self.audio_query = nn.Linear(audio.embed_dim, decoder_dim)
        self.compact_query = nn.ModuleDict(
            {stage: nn.Linear(module.width, decoder_dim) for stage, module in self.alignments.items()}
        )
        self.mask_head = nn.Sequential(conv_norm_act(decoder_dim, decoder_dim), nn.Conv2d(decoder_dim, num_classes, 1))
        self.similarity = similarity
        self.refiner = refiner
        self.uncertainty = uncertainty
        self.num_classes = num_classes

    def embed_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, N, 16000) waveforms -> (B, N, A) audio embeddings, one per second."""
        return self.audio(waveform.flatten(0, 1)).unflatten(0, waveform.shape[:2])

    def forward(
        self,
        frames: torch.Tensor,
        waveform: torch.Tensor | None = None,
        *,
        audio_embeddings: torch.Tensor | None = None,
    ) -> dict:
        """Args:
        frames: (B, T, 3, H, W) floats in [0, 1].
        waveform: (B, T, 16000) each frame's second of 16 kHz mono audio, or (B, k T, 16000)
            with k one-second windows per frame (VPO's 3 s window, and its two channels),
            whose embeddings are averaged [ours].
        audio_embeddings: (B, k T, A) the waveform's `embed_audio`, given instead of it by
            callers that computed them already (a frozen encoder's remembered embeddings).
        """
        b, t, _, height, width = frames.shape
        if (waveform is None) == (audio_embeddings is None):
            raise ValueError("give the audio as either a waveform or audio_embeddings")
        given = waveform if waveform is not None else audio_embeddings
        if given.dim() != 3 or given.shape[0] != b or given.shape[1] % t:
            name = "waveform" if waveform is not None else "audio_embeddings"
            raise ValueError(
                f"audio: expected a (B, k T, {'samples' if waveform is not None else 'A'}) {name} "
                f"with B, T = {b}, {t} as the frames, got shape {tuple(given.shape)}"
            )
        embeddings = self.embed_audio(waveform) if audio_embeddings is None else audio_embeddings  # (B, k T, A)
        audio = embeddings.reshape(b * t, embeddings.shape[1] // t, -1).mean(1)  # (B*T, A)
        image = x = self.visual.normalise(frames.flatten(0, 1))  # (B*T, 3, H, W)
        features, alignments = [], {}
        for index, stage in enumerate(self.visual.stages, start=1):
            x = stage(x)
            if str(index) in self.alignments:
                aligned: Alignment = self.alignments[str(index)](x, audio)
                alignments[index] = aligned
                x = aligned.features
            features.append(x)

        pixels = self.decoder(features)  # (B*T, D, H/4, W/4)
        query = self.audio_query(audio)  # (B*T, D)
        for index, aligned in alignments.items():
            query = query + self.compact_query[str(index)](aligned.compact)
        fused = pixels * (1 + query[:, :, None, None])  # FiLM-style audio modulation
        if self.uncertainty is not None:  # UE's temporal attention feeds the mask head and the evidence
            fused = self.uncertainty.temporal(fused.unflatten(0, (b, t))).flatten(0, 1)
        mask = self.mask_head(fused)  # (B*T, K, H/4, W/4)
        binding = None
        if self.similarity is not None:
            binding = self.similarity.embed(features, audio)  # (B*T, d), (B*T, d, H/4, W/4)
            sounding = self.similarity(*binding)  # (B*T, 1, H/4, W/4)
            if self.num_classes > 1:  # AVSS: raises every object class against background (class 0)
                sounding = F.pad(sounding.expand(-1, self.num_classes - 1, -1, -1), (0, 0, 0, 0, 1, 0))
            mask = mask + sounding
        if self.refiner is not None:
            mask = self.refiner(image, fused, mask)  # (B*T, K, H/2, W/2)
        mask = self._upsample(mask, (height, width)).unflatten(0, (b, t))  # (B, T, K, H, W)

        outputs = {
            "logits": mask,
            "mask_logits": mask,
            "uncertainty": None,
            "evidence": None,
            "relevance": {i: a.relevance.unflatten(0, (b, t)) for i, a in alignments.items()},
            "alignments": alignments,
            "binding": binding,
        }
        if self.uncertainty is not None:
            evidence = self.uncertainty(fused)  # (B*T, K_e, H/4, W/4)
            evidence = self._upsample(evidence, (height, width)).unflatten(0, (b, t)).clamp(min=0)
            _, u = dirichlet_uncertainty(evidence)  # (B, T, H, W)
            outputs.update(logits=down_weighted_logits(mask, evidence), uncertainty=u, evidence=evidence)
        return outputs

    @staticmethod
    def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def build_model(cfg: Config) -> RAVS:
    """Wire the model from the validated configuration (`params.yaml`: model, data)."""
    m = cfg.model
    visual = build_visual_encoder(m.backbone, m.backbone_weights)
    audio = build_audio_encoder(m.audio_encoder, m.audio_weights)
    alignments = {}
    if m.ama.enabled:
        alignments = {
            stage: AudioGuidedAlignment(
                channels=visual.channels[stage - 1],
                dim=m.ama.dim,
                audio_dim=audio.embed_dim,
                num_groups=m.ama.groups[stage - 1],
                num_heads=m.ama.heads,
                knn=m.ama.knn,
                grouping_tokens=m.ama.grouping_tokens,
            )
            for stage in m.ama.stages
        }
    num_classes = cfg.num_classes
    uncertainty = None
    if m.ue.enabled:
        uncertainty = EvidentialHead(
            dim=m.decoder_dim,
            num_classes=max(2, num_classes),  # binary: evidence for background and sounding
            num_heads=m.ue.heads,
            max_frames=m.ue.max_frames,
        )
    similarity = None
    if m.similarity_dim:
        similarity = AudioPixelSimilarity(
            audio_dim=audio.embed_dim, stage_channels=visual.channels, dim=m.similarity_dim
        )
    refiner = None
    if m.refine_dim:
        refiner = MaskRefiner(decoder_dim=m.decoder_dim, num_classes=num_classes, dim=m.refine_dim)
    model = RAVS(
        visual=visual,
        audio=audio,
        alignments=alignments,
        decoder=FPNDecoder(in_channels=visual.channels, dim=m.decoder_dim),
        decoder_dim=m.decoder_dim,
        num_classes=num_classes,
        uncertainty=uncertainty,
        similarity=similarity,
        refiner=refiner,
    )
    # Convolutions on NHWC weights run faster with oneDNN (CPU) and cuDNN (GPU)
    # (benchmarks/memory_format.py); outputs are the same to float rounding, and state dicts load
    # into either layout.
    return model.to(memory_format=torch.channels_last)
