"""Fused trials seen from the driver (issue #38): a Ray trial that trains several learning rates
of one cell at once is several trials to ASHA, Optuna, MLflow and the progress line. Here: a
trial's members (their configs, what they are known by) and each member's part of a result."""
from __future__ import annotations

from clip_prompt_sweeps.names import MEMBER_RESULTS, MEMBERS_KEY


def is_fused(config: dict) -> bool:
    return MEMBERS_KEY in config


def member_configs(config: dict) -> list[dict]:
    """Each member's config as a trial of its own would have it (one: the trial's own)."""
    if not is_fused(config):
        return [config]
    shared = {k: v for k, v in config.items() if k != MEMBERS_KEY}
    return [{**shared, **member} for member in config[MEMBERS_KEY]]


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
