"""Reports built from MLflow alone (never Ray's result files): markdown with PNG figures, the
seed study's numbers beside the reproduced ones. One module per experiment's report; which
sections exist, and in what order, comes from the experiments' records (search_spaces/)."""
