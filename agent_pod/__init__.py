"""voicefleet agent pod runtime: transports, pipeline, providers, sessions."""
