"""What scoring needs: the policy in force (and its stored versions), its cut points and
the custom segments. Flush, never commit."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from services.segment.context_repository import CutPointSets, Policies, Segments
from services.segment.cut_points import CutPoints
from services.segment.models import ScoringPolicyVersion
from services.segment.policy import DEFAULT_POLICY, ScoringPolicy
from services.segment.rules import Rule
from shared.events import ensure_aware, utcnow

RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(Rule)


@dataclass
class ScoringContext:
    """What scoring one event needs: the policy in force, its cut points, the custom segments."""

    policy_version: int
    policy: ScoringPolicy
    cut_points: CutPoints
    segments: list[tuple[str, Rule]] = field(default_factory=list)


def current_policy(session: Session) -> tuple[int, ScoringPolicy, datetime | None]:
    head = Policies(session).latest_head()
    if head is None:
        return 1, DEFAULT_POLICY, None
    version, stored, created_at = head
    return version, _parsed_policy(_json_bytes(stored)), created_at


def _json_bytes(stored: str | dict[str, Any]) -> bytes:
    """A stored JSON column as bytes (SQLite gives its text, PostgreSQL the document): the
    key of the parsed-once caches below."""
    return stored.encode() if isinstance(stored, str) else orjson.dumps(stored)


@functools.lru_cache(maxsize=64)
def _parsed_policy(stored: bytes) -> ScoringPolicy:
    """A stored version validated once (a frozen model): validating takes ~1 ms (every
    string is checked), and each scores read asks for the policy in force."""
    return ScoringPolicy.model_validate(orjson.loads(stored))


def policy_created_at(version: ScoringPolicyVersion) -> datetime | None:
    """When the version came into force: for version 1, the default, the moment the
    migration stored (the database's first start or first batch); it never changes. Null
    only for the implied default of a database not yet migrated."""
    return ensure_aware(version.created_at) if version.created_at is not None else None


def policy_history(session: Session) -> list[ScoringPolicyVersion]:
    """Every stored version; before the first change, the default as version 1."""
    history = Policies(session).history()
    if not history:
        default = DEFAULT_POLICY.model_dump(mode="json")
        history = [
            ScoringPolicyVersion(version=1, policy=default, created_at=None, comment="default")
        ]
    return history


def current_cut_points(
    session: Session, version: int, policy: ScoringPolicy, now: datetime
) -> CutPoints:
    stored = CutPointSets(session).latest_body(version)
    if stored is None:
        empty = _empty_cut_points(policy.model_dump_json(), version)
        return dataclasses.replace(empty, as_of=now)
    return _parsed_cut_points(_json_bytes(stored))


@functools.lru_cache(maxsize=16)
def _parsed_cut_points(stored: bytes) -> CutPoints:
    """A stored set read once (frozen): every consumed batch applies the newest."""
    return CutPoints.from_json(orjson.loads(stored))


@functools.lru_cache(maxsize=64)
def _empty_cut_points(policy_json: str, version: int) -> CutPoints:
    """Before the first batch (every poll would otherwise run pandas on an empty frame)."""
    policy = ScoringPolicy.model_validate_json(policy_json)
    return CutPoints.empty(policy, version, datetime(1970, 1, 1, tzinfo=UTC))


def load_context(session: Session, now: datetime) -> ScoringContext:
    version, policy, _ = current_policy(session)
    return ScoringContext(
        policy_version=version,
        policy=policy,
        cut_points=current_cut_points(session, version, policy, now),
        segments=[
            (s.segment_id, RULE_ADAPTER.validate_python(s.rule)) for s in Segments(session).all()
        ],
    )


def set_policy(session: Session, policy: ScoringPolicy, comment: str | None) -> tuple[int, bool]:
    """Store a new policy version (the first change also stores the default as version 1).

    Returns the version and whether the RFM window changed (then aggregates are recounted).
    """
    _, before, _ = current_policy(session)
    policies = Policies(session)
    latest = policies.latest()
    if latest is None:
        policies.add(
            ScoringPolicyVersion(
                version=1,
                policy=DEFAULT_POLICY.model_dump(mode="json"),
                created_at=utcnow(),
                comment="default",
            )
        )
        version = 2
    else:
        version = latest.version + 1
    policies.add(
        ScoringPolicyVersion(
            version=version,
            policy=policy.model_dump(mode="json"),
            created_at=utcnow(),
            comment=comment,
        )
    )
    return version, policy.window_days != before.window_days
