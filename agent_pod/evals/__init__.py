"""Evals: scenario suites run as real calls against an agent, graded, and reported (`voicefleet eval`)."""
