"""What the LLM sees: structured memory, summaries and the token-budgeted context of a turn."""
