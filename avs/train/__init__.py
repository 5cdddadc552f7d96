"""Ray Train: the per-worker loop, checkpoints, and the trainer set-up."""
