"""Sweep orchestration: CLI, Tuner assembly, per-cell schedulers and searchers, MLflow wiring."""
