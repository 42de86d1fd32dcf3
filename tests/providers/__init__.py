"""End-to-end tests of the cloud providers: the real SDKs against the local wire servers."""
