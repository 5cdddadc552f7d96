"""MLflow: tracking runs, the model registry, promotion, and the local tracking server."""
