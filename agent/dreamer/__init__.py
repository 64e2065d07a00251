"""DreamerV3: maths, networks, world model, actor-critic and the acting agent."""

from agent.dreamer.agent import ActingPolicy, ActingStep, BatchActingPolicy, DreamerAgent

__all__ = ["ActingPolicy", "ActingStep", "BatchActingPolicy", "DreamerAgent"]
