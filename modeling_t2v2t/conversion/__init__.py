"""Checkpoint conversion from other codebases into this package's models (`vindlu`: VindLU -> T2V2T)."""
