"""voicefleet operator: reconciles VoiceAgent resources into fleets of agent pods."""
