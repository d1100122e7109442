"""Profile: the unified customer, identity resolution, tags, consent and erasure."""
