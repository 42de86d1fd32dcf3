"""PCM16 mono audio helpers: validation, streaming resampling, framing, WAV streams."""
