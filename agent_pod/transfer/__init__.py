"""Live transfer of a call to another VoiceAgent of the fleet (docs/transfer.md).

``policy``: the pure decisions (is the target allowed, what context it gets); ``tool``: the built-in
``transfer_call`` tool the LLM may call; ``mover``: the source pod's side of the move; ``api``: the
session API's ``POST /v1/sessions/{id}/transfer``. The Redis side is ``sessions/transfer_store.py``.
"""
