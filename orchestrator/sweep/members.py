"""Fused trials seen from the driver (issue #38): a Ray trial that trains several learning rates
of one cell at once is several trials to ASHA, Optuna, MLflow and the progress line. Here: what
a trial's members are known by and each member's part of a result (their configs:
clip_prompt_sweeps/names.py's member_configs, which the trainables read too)."""
from __future__ import annotations

from clip_prompt_sweeps.names import MEMBER_RESULTS, MEMBERS_KEY


def is_fused(config: dict) -> bool:
    return MEMBERS_KEY in config


def member_key(trial_id: str, k: int) -> str:
    """What a member is known by in the driver, as a trial by its id."""
    return f"{trial_id}/{k}"


def member_results(result: dict) -> dict[int, dict]:
    """Member -> its metrics in one result of a fused trial, nested (what callbacks get) or
    flattened with '/' (what Tune gives schedulers and searchers); {} for a trial's own result."""
    nested = result.get(MEMBER_RESULTS)
    out: dict[int, dict] = {}
    if isinstance(nested, dict):
        for k, metrics in nested.items():
            if str(k).isdigit() and isinstance(metrics, dict):
                out[int(k)] = metrics
        return out
    prefix = MEMBER_RESULTS + "/"
    for key, value in result.items():
        if isinstance(key, str) and key.startswith(prefix):
            k, _, name = key[len(prefix):].partition("/")
            if k.isdigit() and name:
                out.setdefault(int(k), {})[name] = value
    return out
