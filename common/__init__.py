"""What every package of the project may import: the error a user sees and the names the
packages agree on. It imports nothing of the project."""
