"""The `hockey-agent` command line: the entry point (main.py) and the sub-commands of the agent package."""
