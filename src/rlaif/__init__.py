"""rlaif: reinforcement learning from AI feedback (and the RLHF baseline) for TL;DR summarization."""

__version__ = "0.1.0"
