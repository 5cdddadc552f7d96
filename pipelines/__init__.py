"""One thin entry per DVC stage: read params, call avs, write the stage's outputs."""
