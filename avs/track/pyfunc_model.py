"""The registered model's MLflow pyfunc wrapper, logged as code ("models from code").

MLflow stores this file, not a pickle: loading runs this code, which builds the network from
`config.json` and reads `model.safetensors` from the logged artifacts. Input: a dict of
`frames` (B, T, 3, H, W) float32 in [0, 1] and `audio` (B, T, 16000) float32, each frame's second
of 16 kHz mono audio in [-1, 1]. Output: `probability` (B, T, H, W) that a pixel is sounding and
`uncertainty` (B, T, H, W) u (zeros for a model trained without UE).
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel


class SoundingObjectSegmenter(PythonModel):
    def load_context(self, context) -> None:
        from avs.model.saved import load_model

        self.model, _ = load_model(context.artifacts["model"])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        from avs.model.saved import foreground_probability

        frames = torch.as_tensor(np.asarray(model_input["frames"], dtype=np.float32))
        audio = torch.as_tensor(np.asarray(model_input["audio"], dtype=np.float32))
        with torch.inference_mode():
            outputs = self.model(frames, audio)
        probability = foreground_probability(outputs["logits"])
        u = outputs["uncertainty"] if outputs["uncertainty"] is not None else torch.zeros_like(probability)
        return {"probability": probability.numpy(), "uncertainty": u.float().numpy()}


mlflow.models.set_model(SoundingObjectSegmenter())
