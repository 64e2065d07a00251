"""Training: the learning environments, replay, the DreamerV3 loop, checkpoints, metrics, diagnosis."""
