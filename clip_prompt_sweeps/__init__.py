"""The project's own package, below every other: the error a user sees and the names the
packages agree on (errors.py, names.py), and the MLflow store (store/). It imports nothing of
the other packages; its name is the project's, so that it clashes with nothing a user has."""
