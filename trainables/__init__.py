"""Experiments of the study as Ray Tune function trainables, plus the data, models and prompts
they share. Nothing here imports the orchestrator: every trainable runs without Ray's driver."""
from trainables.errors import UserError
from trainables.registry import get_trainable, list_trainables, register_trainable

__all__ = ["UserError", "get_trainable", "list_trainables", "register_trainable"]
