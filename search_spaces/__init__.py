"""Registry of sweeps: each module holds one `SWEEP` (data only, no code paths)."""
from __future__ import annotations

from search_spaces import compare, cross, deep, finetune, linear, robustness, visual, zeroshot
from search_spaces.spec import LogUniform, Profile, SweepSpace, cell_key
from trainables.errors import UserError

_MODULES = (compare, cross, deep, finetune, linear, robustness, visual, zeroshot)
_SWEEPS: dict[str, SweepSpace] = {m.SWEEP.name: m.SWEEP for m in _MODULES}


def get_sweep(name: str) -> SweepSpace:
    if name not in _SWEEPS:
        raise UserError(f"unknown sweep '{name}'; known: {', '.join(sorted(_SWEEPS))}")
    return _SWEEPS[name]


def get_profile(sweep: SweepSpace, profile: str) -> Profile:
    if profile not in sweep.profiles:
        raise UserError(f"unknown profile '{profile}' for sweep '{sweep.name}'; "
                        f"known: {', '.join(sorted(sweep.profiles))}")
    return sweep.profiles[profile]


def list_sweeps() -> list[SweepSpace]:
    return [_SWEEPS[k] for k in sorted(_SWEEPS)]


__all__ = ["LogUniform", "Profile", "SweepSpace", "cell_key", "get_profile", "get_sweep", "list_sweeps"]
