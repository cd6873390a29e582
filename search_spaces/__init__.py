"""The experiments of the study, one module each, each holding one `Experiment` record (see
experiment.py): data only, no code paths. registry.py finds them."""
