"""The commands a user types: `cli` parses and dispatches, `handlers` turns each command into a call
of the room that does the work and prints what it says; `status`, `fetch`, `classify` and `doctor`
are the commands whose work is theirs alone. Imports point one way: commands -> sweep, clusters, bench."""
