"""Ingest: the durable raw event store; validation, normalisation, dedup; bulk import."""
