"""The registered model's MLflow pyfunc wrapper, logged as code ("models from code").

MLflow stores this file, not a pickle: loading runs this code, which builds the network from
`config.json` and reads `model.safetensors` from the logged artifacts. Input: a dict of
`frames` (B, T, 3, H, W) float32 in [0, 1] and `audio` (B, T, 16000) float32, each frame's second
of 16 kHz mono audio in [-1, 1]. Output: `probability` (B, T, H, W) that a pixel is sounding and
`uncertainty` (B, T, H, W) u (zeros for a model trained without UE), at the input's H x W. The
model runs at the test-time size, mirror averaging and guided filter it was evaluated with
(`image_size`, `flip`, `guided_kernel`, `guided_eps` in the logged model_config, written by
`avs register`; else the model's own config).
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel


class SoundingObjectSegmenter(PythonModel):
    def load_context(self, context) -> None:
        from avs.eval.inference import inference_size
        from avs.model.saved import load_model

        self.model, cfg = load_model(context.artifacts["model"])
        settings = context.model_config or {}
        self.image_size = int(settings.get("image_size") or inference_size(cfg))
        self.flip = bool(settings.get("flip", cfg.evaluate.flip))
        self.guided_kernel = int(settings.get("guided_kernel", cfg.evaluate.guided_kernel))
        self.guided_eps = float(settings.get("guided_eps", cfg.evaluate.guided_eps))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        from avs.eval.inference import segment
        from avs.model.saved import foreground_probability

        frames = torch.as_tensor(np.asarray(model_input["frames"], dtype=np.float32))
        audio = torch.as_tensor(np.asarray(model_input["audio"], dtype=np.float32))
        with torch.inference_mode():
            outputs = segment(
                self.model,
                frames,
                audio,
                size=self.image_size,
                flip=self.flip,
                guided_kernel=self.guided_kernel,
                guided_eps=self.guided_eps,
            )
        probability = foreground_probability(outputs["logits"])
        u = outputs["uncertainty"] if outputs["uncertainty"] is not None else torch.zeros_like(probability)
        return {"probability": probability.numpy(), "uncertainty": u.float().numpy()}


mlflow.models.set_model(SoundingObjectSegmenter())
