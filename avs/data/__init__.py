"""Datasets: real-layout adapters, the embedded `stamps` set, audio front end and Parquet shards."""
