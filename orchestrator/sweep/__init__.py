"""A sweep: its plan (`plan`), the driver that runs it (`driver`: Ray, the parent run through
`parent`, the Tuner through `tuner`, the signals through `signals`), its phases (`replicates`), the
per-cell scheduler and searcher, the MLflow child runs (`tracking`), the progress line, the resume
planning, the checks before anything starts (`preflight`), the source runs a cell evaluates and the
cost plan of a dry run. It imports the clusters room (where Ray runs), never the commands."""
