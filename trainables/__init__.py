"""Every experiment of the study as a Ray Tune function trainable (a typed config and a run), and
the model and data layers they share. Nothing here imports the orchestrator, the reports or the
sweep registry, and only trainables/ray_io.py touches Ray: a run works without Ray's driver."""
