"""Every experiment of the study as a Ray Tune function trainable, in four rooms whose imports
point one way: `data` (the dataset type, its sources and the device pipeline) and `paths` below
everything; `models` and `training` on data; `experiments` (the trial entries) on all three.
Nothing here imports the orchestrator, the reports or the sweep registry, and only
trainables/training/ray_io.py touches Ray: a run works without Ray's driver."""
