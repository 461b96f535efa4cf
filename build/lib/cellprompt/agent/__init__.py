"""The agent loop: a model, a sandbox, two tools, and limits."""

from cellprompt.agent.loop import AgentLimits, AgentOutcome, run_agent

__all__ = ["AgentLimits", "AgentOutcome", "run_agent"]
