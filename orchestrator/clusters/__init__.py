"""Where a sweep runs: connecting to Ray and its storage (`connect`), the checks of a cluster file
(`files`) and the kinds of cluster behind one interface (`kinds`: AWS, on-premise, SLURM). It imports
nothing else of the orchestrator."""
