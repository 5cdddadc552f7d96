"""avs: robust audio-visual segmentation (AMA + UE), reproducible and distributed."""

__version__ = "0.1.0"
