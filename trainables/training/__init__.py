"""What every trial shares: typed configs, the one training loop, feature caches, checkpoints,
the device, and a trainable's entry (its name, config and Ray Tune function; `ray_io` is the only
module here that touches Ray)."""
