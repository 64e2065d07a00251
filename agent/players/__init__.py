"""Who plays: the Policy interface, the scripted players, and matches between players."""
