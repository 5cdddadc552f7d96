"""Evaluation: metrics accumulated over whole datasets, calibration, robustness."""
