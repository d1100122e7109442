"""Static checks of docker-compose.yml, the Dockerfile and deploy/, with no Docker engine.

docker-compose.yml is validated against the Compose Specification JSON schema
vendored at deploy/compose-spec.json (upstream: repository compose-spec/compose-spec,
file schema/compose-spec.json, branch master; taken byte for byte from the copy
vendored in the check-jsonschema 0.39.0 wheel on PyPI, see deploy/README.md),
then against the deployment's own requirements. No secret file is read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared import manifest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "deploy" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "init-databases.sh"
SECRETS_DIR = ROOT / "deploy" / "secrets"

APP_PORTS = manifest.DEFAULT_PORTS
SECRET_WORDS = ("PASSWORD", "SECRET", "API_KEY", "DATABASE_URL")
RUNNING_RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, as Compose's YAML parser does."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<:` merges may be overridden by explicit keys
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec["condition"] for name, spec in deps.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


def _secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """{target file name under /run/secrets: source secret} for one service."""
    targets = {}
    for item in service.get("secrets") or []:
        if isinstance(item, str):
            targets[item] = item
        else:
            targets[item.get("target", item["source"])] = item["source"]
    return targets


def _ports(service: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(published, target) pairs, from the short or the long port syntax."""
    pairs = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published = port.get("published")
            pairs.append((None if published is None else str(published), int(port["target"])))
            continue
        parts = str(port).split("/", 1)[0].split(":")
        pairs.append((parts[-2] if len(parts) > 1 else None, int(parts[-1])))
    return pairs


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) per mount; short-syntax sources not like a path are volumes."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((volume["type"], volume.get("source", ""), volume["target"]))
            continue
        source, _, rest = volume.partition(":")
        target = rest.split(":", 1)[0]
        kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


# --- the schema itself -------------------------------------------------------


def test_vendored_schema_is_the_unmodified_upstream_file() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    assert schema["$id"] == "compose_spec.json"


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in errors
    )


def _set_restart_to_a_number(doc: dict[str, Any]) -> None:
    doc["services"]["kafka"]["restart"] = 7


def _add_unknown_top_level_key(doc: dict[str, Any]) -> None:
    doc["servics"] = {}


def _add_unknown_service_key(doc: dict[str, Any]) -> None:
    doc["services"]["ingest"]["restrat"] = "always"


def _use_unknown_depends_on_condition(doc: dict[str, Any]) -> None:
    doc["services"]["ingest"]["depends_on"]["kafka"]["condition"] = "service_ready"


def _misspell_a_healthcheck_key(doc: dict[str, Any]) -> None:
    doc["services"]["postgres"]["healthcheck"]["intervall"] = "5s"


def _make_secrets_a_string(doc: dict[str, Any]) -> None:
    doc["services"]["profile"]["secrets"] = "crm_api_key"


@pytest.mark.parametrize(
    "mutate",
    [
        _set_restart_to_a_number,
        _add_unknown_top_level_key,
        _add_unknown_service_key,
        _use_unknown_depends_on_condition,
        _misspell_a_healthcheck_key,
        _make_secrets_a_string,
    ],
)
def test_schema_validation_rejects_an_invalid_document(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator, mutate: Any
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_yaml_loader_rejects_duplicate_keys_like_compose_does() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'restart'"):
        _load_yaml("services:\n  a:\n    restart: always\n    restart: 'no'\n")
    merged = _load_yaml("x: &base {restart: always}\ny:\n  <<: *base\n  restart: 'no'\n")
    assert merged["y"] == {"restart": "no"}


# --- infrastructure ----------------------------------------------------------


def test_kafka_is_the_official_image_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert re.fullmatch(r"(3\.9|4\.\d+)\.\d+", tag), f"pin a 3.9.x or 4.x tag, not {tag!r}"

    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].replace(" ", "").split(",")) == {"broker", "controller"}
    assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or env.get(
        "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS"
    )
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"

    assert kafka["restart"] in RUNNING_RESTART_POLICIES
    assert "kafka-broker-api-versions.sh" in _healthcheck_command(
        kafka
    ) or "kafka-topics.sh" in _healthcheck_command(kafka)
    named = {target: source for kind, source, target in _volume_mounts(kafka) if kind == "volume"}
    assert env["KAFKA_LOG_DIRS"] in named, "Kafka's log dirs must be on a named volume"


def test_postgres_is_healthy_gated_with_a_secret_password(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:16(\.\d+)?", postgres["image"])
    assert postgres["restart"] in RUNNING_RESTART_POLICIES
    assert "pg_isready" in _healthcheck_command(postgres)

    env = _environment(postgres)
    assert "POSTGRES_PASSWORD" not in env
    password_file = env["POSTGRES_PASSWORD_FILE"]
    assert password_file.startswith("/run/secrets/")
    assert password_file.removeprefix("/run/secrets/") in _secret_targets(postgres)

    mounts = _volume_mounts(postgres)
    assert ("volume", "postgres-data", "/var/lib/postgresql/data") in {
        (kind, source, target) for kind, source, target in mounts
    }
    init_mounts = [
        (source, target)
        for kind, source, target in mounts
        if kind == "bind" and target.startswith("/docker-entrypoint-initdb.d/")
    ]
    assert init_mounts, "the init script must be mounted into /docker-entrypoint-initdb.d"
    for source, target in init_mounts:
        assert (ROOT / source).resolve() == INIT_SCRIPT
        assert target.endswith(".sh")


def test_init_script_creates_one_database_per_service() -> None:
    assert os.access(INIT_SCRIPT, os.X_OK), "executable, so the entrypoint runs it, not sources it"
    text = INIT_SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/")
    assert "CREATE DATABASE" in text
    default = re.search(r'CRM_DATABASES:-([a-z_ ]+)\}"', text)
    assert default, "expected a default database list in ${CRM_DATABASES:-...}"
    assert set(default.group(1).split()) == set(APP_PORTS)
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(INIT_SCRIPT)], check=True)


# --- the four services -------------------------------------------------------


def _app_image(services: dict[str, Any]) -> str:
    return services["ingest"]["image"]


@pytest.mark.parametrize(("name", "port"), sorted(APP_PORTS.items()))
def test_service_is_healthy_gated_and_restarts(
    services: dict[str, Any], name: str, port: int
) -> None:
    service = services[name]
    assert _command(service) == ["python", "-m", f"services.{name}", "serve"]
    assert service["image"] == _app_image(services)
    assert service["restart"] in RUNNING_RESTART_POLICIES
    assert service.get("stop_grace_period")

    healthcheck = service["healthcheck"]
    assert not healthcheck.get("disable")
    assert f"http://127.0.0.1:{port}/readyz" in _healthcheck_command(service)

    assert _depends_on(service) == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        f"{name}-migrate": "service_completed_successfully",
    }
    assert (str(port), port) in _ports(service)

    env = _environment(service)
    prefix = name.upper()
    assert env[f"{prefix}_HOST"] == "0.0.0.0"
    assert str(env[f"{prefix}_PORT"]) == str(port)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert str(env["CRM_TOPIC_PARTITIONS"]) == "3"
    assert str(env["CRM_REPLICATION_FACTOR"]) == "1"

    targets = _secret_targets(service)
    assert f"{name}_database_url" in targets
    assert "crm_api_key" in targets


@pytest.mark.parametrize("name", sorted(APP_PORTS))
def test_migrate_job_runs_once_before_its_service(services: dict[str, Any], name: str) -> None:
    job = services[f"{name}-migrate"]
    assert _command(job) == ["python", "-m", f"services.{name}", "migrate"]
    assert job["restart"] == "no"
    assert job["image"] == _app_image(services)
    assert _depends_on(job).get("postgres") == "service_healthy"
    assert _secret_targets(job)[f"{name}_database_url"] == f"{name}_database_url"
    assert _environment(job) == _environment(services[name])


def test_every_build_uses_the_one_dockerfile(services: dict[str, Any]) -> None:
    built = {name: service for name, service in services.items() if "build" in service}
    assert set(built) == set(APP_PORTS) | {f"{name}-migrate" for name in APP_PORTS}
    for name, service in built.items():
        build = service["build"]
        if isinstance(build, str):
            build = {"context": build}
        assert Path(build["context"]) == Path("."), name
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        assert "dockerfile_inline" not in build, name
        assert service["image"] == _app_image(services), name
    assert (ROOT / "Dockerfile").is_file()


# --- secrets, volumes, networks ----------------------------------------------


def test_no_secret_in_plain_environment(compose: dict[str, Any]) -> None:
    credentials_in_url = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
    for name, service in compose["services"].items():
        assert "env_file" not in service, f"{name}: env_file would bypass compose secrets"
        for key, value in _environment(service).items():
            if any(word in key.upper() for word in SECRET_WORDS):
                # Only the *_FILE convention (a path to a mounted secret) is allowed.
                assert key.upper().endswith("_FILE"), f"{name}: {key} must come from secrets:"
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}={value}"
            assert not credentials_in_url.search(str(value)), f"{name}: {key} holds credentials"
        build = service.get("build")
        if isinstance(build, dict):
            for key in _environment({"environment": build.get("args")}):
                assert not any(word in key.upper() for word in SECRET_WORDS), f"{name}: {key}"


def test_every_secret_is_declared_and_has_a_template(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    used = set()
    for name, service in compose["services"].items():
        for source in _secret_targets(service).values():
            assert source in declared, f"{name} uses undeclared secret {source!r}"
            used.add(source)
    assert used == set(declared), f"declared but unused: {set(declared) - used}"

    gitignore = (SECRETS_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert "*.txt" in gitignore
    assert (SECRETS_DIR / "README.md").is_file()
    for secret_name, spec in declared.items():
        path = (ROOT / spec["file"]).resolve()
        assert path.parent == SECRETS_DIR, secret_name
        assert path.name == f"{secret_name}.txt", secret_name
        assert path.with_name(path.name + ".example").is_file(), f"{secret_name}: no template"


def test_app_secret_targets_match_setting_names(services: dict[str, Any]) -> None:
    # pydantic-settings reads /run/secrets/<setting name, lower case>.
    for name in APP_PORTS:
        for job in (name, f"{name}-migrate"):
            for target in _secret_targets(services[job]):
                assert target in {f"{name}_database_url", "crm_api_key"}, f"{job}: {target}"


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {
        source
        for service in compose["services"].values()
        for kind, source, _ in _volume_mounts(service)
        if kind == "volume"
    }
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert declared <= used, f"unused volumes: {declared - used}"
    assert {"kafka-data", "postgres-data"} <= declared


def test_networks_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("networks") or {})
    for name, service in compose["services"].items():
        networks = service.get("networks") or []
        assert networks, f"{name} joins no declared network"
        assert set(networks) <= declared, name


# --- the image ---------------------------------------------------------------


def test_dockerfile_builds_one_non_root_image_for_all_services() -> None:
    instructions = _dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any(k == "ENV" and "PYTHONUNBUFFERED=1" in args for k, args in instructions)

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}

    copies = [args for keyword, args in instructions if keyword == "COPY"]
    first_pyproject = next(i for i, args in enumerate(copies) if "pyproject.toml" in args)
    for package in ("shared/", "services/"):
        index = next(i for i, args in enumerate(copies) if args.startswith(package))
        assert first_pyproject < index, "pyproject.toml is copied before the sources"
    assert any(
        keyword == "RUN" and re.search(r"pip install (--no-deps )?\.(\s|$)", args)
        for keyword, args in instructions
    )
    assert keywords[-1] == "CMD"
    assert json.loads(instructions[-1][1]) == ["python", "-m", "services.ingest", "serve"]


def test_dockerignore_keeps_the_build_context_small_and_secret_free() -> None:
    entries = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    for entry in (".venv", "var", ".git", "tests", "bench"):
        assert entry in entries, entry
    assert entries & {"deploy", "deploy/secrets"}, "secret files must stay out of the image"
    assert entries & {"__pycache__", "**/__pycache__"}
