"""The services of the platform, each named once: its port, the topics it creates and
writes, its database. ``make run`` (devrun), ``make migrate``, the topic keeper, the
AsyncAPI document, the ``crm`` command, the OpenAPI export, the services an export or an
erasure waits for, the known API key scopes, compose's database list and the tests read
this list; a fifth service is an entry here plus its package under ``services/`` and its
compose and monitoring entries (docs/architecture.md walks through one).

What a service *consumes* is not listed: it follows from the service's handler
registries (``shared.registry``), the one place an event type is added per consumer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from shared import topics


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    #: the default HTTP port (``<NAME>_PORT`` overrides it)
    port: int
    summary: str
    #: the platform topics it publishes to (AsyncAPI's writers); export parts and erasure
    #: acknowledgements among them make it a service profile waits for (see below)
    writes: tuple[str, ...]
    #: topics outside producers write that this service reads: it creates them at start so
    #: its consumers can subscribe before the first outside record arrives
    receives: tuple[str, ...] = ()
    #: topics private to the service (not in the public contract): created with the rest
    private_topics: tuple[str, ...] = ()

    @property
    def package(self) -> str:
        """The Python package: ``python -m services.<name>`` runs it."""
        return f"services.{self.name}"

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"

    @property
    def database(self) -> str:
        """Its database: ``<name>.db`` under ``CRM_DATA_DIR``, or database ``<name>`` in
        compose's PostgreSQL; each service owns its own."""
        return self.name

    @property
    def owned_topics(self) -> tuple[str, ...]:
        """The topics it creates at start (with the configured partitions)."""
        return tuple(dict.fromkeys((*self.receives, *self.writes, *self.private_topics)))

    @property
    def answers_exports(self) -> bool:
        """Whether it answers subject-access exports: it writes export parts (its app runs
        ``shared.exports.answering_exports``), so profile waits for its part."""
        return topics.EXPORT_PARTS in self.writes

    @property
    def applies_erasures(self) -> bool:
        """Whether it applies erasures and acknowledges them: it writes erasure
        acknowledgements (the batch handler of its consumer loop on crm.profiles.v1 calls
        ``shared.erasure_acks.acknowledge`` over the batch it applied), so profile waits
        for them."""
        return topics.ERASURES_APPLIED in self.writes


#: every service writes dead letters, subject-access export parts and (apart from profile,
#: which erases first) erasure acknowledgements; profile asks for the exports
_EVERY = (topics.DEADLETTER, topics.EXPORT_PARTS)

SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="ingest",
        port=8001,
        summary="the durable raw event store; validation, normalisation, dedup; bulk import",
        receives=topics.RAW_TOPICS,
        writes=(
            topics.ORDERS,
            topics.CUSTOMERS,
            topics.INTERACTIONS,
            *_EVERY,
            topics.ERASURES_APPLIED,
        ),
        private_topics=(topics.INGEST_EPOCHS,),
    ),
    ServiceSpec(
        name="profile",
        port=8002,
        summary="identity resolution, the unified profile, contact policy, erasure, API keys",
        writes=(topics.PROFILES, topics.DEADLETTER, topics.EXPORT_REQUESTS),
        receives=(topics.EXPORT_PARTS, topics.ERASURES_APPLIED),
    ),
    ServiceSpec(
        name="segment",
        port=8003,
        summary="RFM, lifecycle, value quadrant, funnel, custom segments, predictive CLV",
        writes=(topics.SEGMENTS, *_EVERY, topics.ERASURES_APPLIED),
    ),
    ServiceSpec(
        name="campaign",
        port=8004,
        summary="campaigns, audiences, holdouts, message requests, conversion evaluation",
        receives=(topics.CAMPAIGN_RECEIPTS,),
        writes=(topics.CAMPAIGN_MESSAGES, *_EVERY, topics.ERASURES_APPLIED),
    ),
)

NAMES: tuple[str, ...] = tuple(spec.name for spec in SERVICES)
DEFAULT_PORTS: dict[str, int] = {spec.name: spec.port for spec in SERVICES}

#: the services profile waits for: their subject-export parts, their erasure acknowledgements
EXPORT_ANSWERERS: tuple[str, ...] = tuple(s.name for s in SERVICES if s.answers_exports)
ERASURE_APPLIERS: tuple[str, ...] = tuple(s.name for s in SERVICES if s.applies_erasures)

#: topics every service creates itself, with a layout of their own (one partition; the key
#: records compacted: ``shared.apikeys.ensure_keys_topics``), not through the topic keeper
EVERY_SERVICE_TOPICS: tuple[str, ...] = (topics.APIKEYS, topics.APIKEY_USAGE)

#: who writes the topics no service writes (AsyncAPI)
OUTSIDE_WRITERS: dict[str, str] = {
    **dict.fromkeys(topics.RAW_TOPICS, "outside producers"),
    topics.CAMPAIGN_RECEIPTS: "channel gateways",
}


def service(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(f"no service {name!r} in shared.manifest (known: {', '.join(NAMES)})")


def owned_topics(name: str) -> tuple[str, ...]:
    """The topics service ``name`` creates at start; none for a name not listed (a test's
    own runtime)."""
    return service(name).owned_topics if name in NAMES else ()


def writers(topic: str) -> str:
    """Who writes ``topic``: the services, in manifest order, or the outside writer."""
    names = [spec.name for spec in SERVICES if topic in spec.writes]
    if topic in OUTSIDE_WRITERS:
        names.insert(0, OUTSIDE_WRITERS[topic])
    return ", ".join(names)


def all_topics() -> tuple[str, ...]:
    """Every topic the services create, private ones included (``make run``'s broker
    restart re-creates these)."""
    return tuple(dict.fromkeys(t for spec in SERVICES for t in spec.owned_topics))


def public_topics() -> tuple[str, ...]:
    """Every topic of the public contract (each a channel of the AsyncAPI document): what
    the services create, less their private topics, plus the API key topics."""
    private = {t for spec in SERVICES for t in spec.private_topics}
    return (*(t for t in all_topics() if t not in private), *EVERY_SERVICE_TOPICS)


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.manifest [names|ports]``: for the Makefile and shell scripts."""
    what = (argv if argv is not None else sys.argv[1:]) or ["names"]
    if what[0] == "names":
        print(" ".join(NAMES))
    elif what[0] == "ports":
        print(" ".join(f"{spec.name}={spec.port}" for spec in SERVICES))
    else:
        print("usage: python -m shared.manifest [names|ports]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
