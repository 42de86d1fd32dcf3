"""Callers of an agent pod: gRPC and WebRTC clients, their audio and what they recorded."""
