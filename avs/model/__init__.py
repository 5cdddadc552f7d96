"""The RAVS model (METHOD.md): encoders, DPC-KNN grouping, AMA, UE, decoder, losses."""

from avs.model.losses import compute_losses
from avs.model.ravs import RAVS, build_model

__all__ = ["RAVS", "build_model", "compute_losses"]
