"""The cascaded voice pipeline of one call: VAD -> STT -> LLM (tools) -> TTS -> playout."""
