"""Knowledge bases: ingesting sources into a searchable index, and retrieval in calls (docs/knowledge.md)."""
