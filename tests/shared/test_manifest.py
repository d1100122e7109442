"""The service manifest (shared/manifest.py) is the one list of services: each entry has
its package, settings and migrations, every platform topic has an owner that creates it,
and what reads the list (make, compose, AsyncAPI) agrees with it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from shared import apikeys, asyncapi, erasure_acks, exports, manifest, topics
from shared.events import ProfileErasedEvent
from shared.topic_keeper import keeps

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec", manifest.SERVICES, ids=manifest.NAMES)
def test_each_entry_is_a_runnable_package(spec: manifest.ServiceSpec) -> None:
    package = ROOT / "services" / spec.name
    assert (package / "__main__.py").is_file() and (package / "migrations").is_dir()
    settings = importlib.import_module(f"{spec.package}.config").Settings
    assert settings.service_name == spec.name
    assert settings.default_port == spec.port
    assert settings.model_config["env_prefix"] == spec.env_prefix
    app = importlib.import_module(f"{spec.package}.app")
    assert callable(app.create_app)


@pytest.mark.parametrize("spec", manifest.SERVICES, ids=manifest.NAMES)
def test_its_registry_and_the_services_profile_waits_for(
    spec: manifest.ServiceSpec, tmp_path: Path
) -> None:
    """Profile waits for the export parts and erasure acknowledgements of the services whose
    entry writes those topics: each of them runs an export answerer and handles
    ``profile.erased``, and no other service does (profile would wait for it forever)."""
    assert (spec.name in exports.ANSWERING_SERVICES) == spec.answers_exports
    assert (spec.name in erasure_acks.APPLYING_SERVICES) == spec.applies_erasures
    handlers = importlib.import_module(f"{spec.package}.handlers")
    # every event type on the topics it consumes is handled or ignored (a new service's too)
    assert handlers.HANDLERS.unclaimed() == set()
    assert (ProfileErasedEvent in handlers.HANDLERS.handlers) == spec.applies_erasures
    settings = importlib.import_module(f"{spec.package}.config").Settings(data_dir=tmp_path)
    runtime = importlib.import_module(f"{spec.package}.app").create_runtime(settings)
    try:
        consumed = set(runtime.topics) - set(spec.owned_topics)
        assert (topics.EXPORT_REQUESTS in consumed) == spec.answers_exports
    finally:
        runtime.db.dispose()


def test_names_ports_and_databases_are_unique() -> None:
    assert len(set(manifest.NAMES)) == len(manifest.SERVICES)
    assert len(set(manifest.DEFAULT_PORTS.values())) == len(manifest.SERVICES)
    assert len({spec.database for spec in manifest.SERVICES}) == len(manifest.SERVICES)
    with pytest.raises(KeyError, match="no service 'no-such-service'"):
        manifest.service("no-such-service")
    assert manifest.owned_topics("a-test-runtime") == ()


def test_every_platform_topic_is_created_by_a_service() -> None:
    """``make run`` re-creates ``manifest.all_topics()`` after a broker restart, and each
    service creates its own at start: a topic nobody owns would be left to auto-create."""
    own_layout = {t for t in manifest.public_topics() if not keeps(t)}
    assert own_layout == {apikeys.APIKEYS_TOPIC, apikeys.APIKEY_USAGE_TOPIC}
    assert own_layout == set(manifest.EVERY_SERVICE_TOPICS)
    assert set(manifest.public_topics()) - own_layout <= set(manifest.all_topics())
    assert topics.INGEST_EPOCHS in manifest.service("ingest").owned_topics


def test_every_topic_has_a_writer_in_the_asyncapi_document() -> None:
    document = asyncapi.build()
    writers = {
        channel["address"]: channel["description"].split("Written by ")[1]
        for channel in document["channels"].values()
    }
    assert set(writers) == set(manifest.public_topics())
    assert writers[topics.ORDERS].startswith("ingest.")
    assert writers[topics.RAW_ORDERS].startswith("outside producers.")
    assert writers[topics.DEADLETTER].startswith(", ".join(manifest.NAMES))


def test_make_and_shell_read_the_names() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shared.manifest", "names"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == list(manifest.NAMES)
    assert "shared.manifest names" in (ROOT / "Makefile").read_text()
