"""t2v2t data pipeline: video decoding and frame sampling, dataset builders for real corpora and the built-in
synthetic benchmark, and batching for training and evaluation.

Every builder returns a `datasets.Dataset` with the schema in `processing.schema` (one row per video).
"""
