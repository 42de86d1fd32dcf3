"""Flows: a conversation graph of specialist nodes with handoffs (docs/flows.md).

graph.py holds the pure decisions, state.py what the call's snapshot keeps, runtime.py the part a
live session calls.
"""
