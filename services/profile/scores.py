"""A profile's scores: the newest segment change wins (pure, no I/O)."""

from __future__ import annotations

from services.profile.domain import Scores, iso
from shared.events import ScoreSnapshot, SegmentChangedPayload

SCORE_FIELDS = tuple(ScoreSnapshot.model_fields)


def apply_segment_change(scores: Scores, change: SegmentChangedPayload) -> bool:
    """Take the scores of a segment change unless an equal or newer one was applied."""
    as_of = iso(change.as_of)
    version = f"{as_of}|{change.policy_version:012d}"
    if scores.version is not None and version < scores.version:
        return False
    scores.version = version
    if change.removed or change.current is None:
        scores.snapshot = None
        scores.segments = []
        return True
    current: ScoreSnapshot = change.current
    snapshot = {name: getattr(current, name) for name in SCORE_FIELDS}
    snapshot["monetary"] = str(current.monetary)
    for name in ("first_order_at", "last_order_at"):
        if snapshot[name] is not None:
            snapshot[name] = iso(snapshot[name])
    snapshot["policy_version"] = change.policy_version
    snapshot["as_of"] = as_of
    scores.snapshot = snapshot
    scores.segments = sorted(set(change.segments))
    return True
