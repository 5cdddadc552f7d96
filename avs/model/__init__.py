"""The RAVS model (METHOD.md): encoders, DPC-KNN grouping, AMA, UE, decoder, losses."""
