"""The tool orchestration layer (docs/tools.md): idempotency, confirmation, breakers, audit, MCP.

``agent_pod.pipeline.tools.ToolRunner`` runs a session's calls through these
pieces whatever the tool's source (HTTP endpoint or MCP server).
"""
