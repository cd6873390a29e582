"""`python -m orchestrator bench`: the speed sections and their table (`speed`) and the orchestration
cost per trial (`overhead`). It imports the sweep room, whose machinery `overhead` times."""
