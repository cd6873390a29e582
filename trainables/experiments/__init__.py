"""One module per experiment of the study: its typed config and its `run`, declared as a trainable
(`training.entry.trainable`). search_spaces/ pairs each with its sweep."""
