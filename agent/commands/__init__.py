"""Click sub-commands of the `agent` package (each imports its heavy modules lazily)."""
