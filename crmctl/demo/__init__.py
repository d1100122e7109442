"""``make demo``: a realistic shop generated, streamed in and reported on (see docs/getting-started.md)."""
