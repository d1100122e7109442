"""Segment: per-customer RFM aggregates, scores, lifecycle, quadrants, custom segments."""
