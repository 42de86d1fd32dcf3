"""Local servers that speak the OpenAI and Deepgram wire protocols, for the real SDKs to talk to."""
