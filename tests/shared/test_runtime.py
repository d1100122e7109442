"""Process-level tuning the service command line applies."""

from __future__ import annotations

import gc

import pytest

from shared import runtime


@pytest.fixture
def restore_gc():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)
    gc.unfreeze()
    runtime._gc_tuned = False


def test_tune_gc_freezes_the_heap_and_only_ever_raises_the_thresholds(restore_gc) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    runtime.tune_gc()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    gc.set_threshold(50_000, 5, 100)
    runtime.tune_gc()
    assert gc.get_threshold() == (50_000, 20, 100)
    gc.set_threshold(0)  # switched off: left so
    runtime.tune_gc()
    assert gc.get_threshold()[0] == 0


def test_start_up_heap_is_frozen_only_in_a_tuned_process(restore_gc) -> None:
    gc.unfreeze()
    runtime._gc_tuned = False
    runtime.freeze_startup_heap()
    assert gc.get_freeze_count() == 0  # tests and embedding code are left alone
    runtime.tune_gc()
    gc.unfreeze()
    started = [object() for _ in range(10)]  # what start-up adds
    runtime.freeze_startup_heap()
    assert gc.get_freeze_count() >= len(started)


def test_kafka_tuning_settings_reach_the_kafka_clients(monkeypatch, tmp_path) -> None:
    from services.segment.app import create_runtime
    from services.segment.config import Settings as SegmentSettings
    from shared.config import ServiceSettings

    monkeypatch.setenv("CRM_KAFKA_LINGER_MS", "20")
    monkeypatch.setenv("CRM_KAFKA_COMPRESSION", "none")
    monkeypatch.setenv("CRM_KAFKA_FETCH_MIN_BYTES", "65536")
    monkeypatch.setenv("CRM_KAFKA_FETCH_MAX_WAIT_MS", "250")
    settings = ServiceSettings()
    assert settings.producer_tuning == {"linger_ms": 20, "compression_type": None}
    assert settings.consumer_tuning == {"fetch_min_bytes": 65536, "fetch_max_wait_ms": 250}
    built = create_runtime(SegmentSettings(data_dir=tmp_path))
    try:
        # the service's producer is made with them (make_producer applies overrides last)
        assert built.publisher._overrides["linger_ms"] == 20
        assert built.publisher._overrides["compression_type"] is None
    finally:
        built.db.dispose()
    monkeypatch.setenv("CRM_KAFKA_COMPRESSION", "brotli")
    with pytest.raises(ValueError, match="CRM_KAFKA_COMPRESSION"):
        ServiceSettings()


@pytest.mark.parametrize("service", ["ingest", "profile", "segment", "campaign"])
def test_only_the_order_path_consumers_fetch_at_the_short_wait(
    service: str, monkeypatch, tmp_path
) -> None:
    """Each idle fetch costs the client and the broker CPU (docs/performance.md): the
    consumers on the order path wait ``CRM_KAFKA_FETCH_MAX_WAIT_MS``, the others (keys,
    exports, erasure receipts, ingest's erasures) ``CRM_KAFKA_SIDE_FETCH_MAX_WAIT_MS``."""
    import importlib

    monkeypatch.setenv("CRM_KAFKA_FETCH_MAX_WAIT_MS", "80")
    monkeypatch.setenv("CRM_KAFKA_SIDE_FETCH_MAX_WAIT_MS", "900")
    app = importlib.import_module(f"services.{service}.app")
    config = importlib.import_module(f"services.{service}.config")
    runtime = app.create_runtime(config.Settings(data_dir=tmp_path))
    try:
        assert runtime.consumer_factory is not None
        consumers = runtime.consumer_factory(runtime)
        waits = {}
        for consumer in consumers:
            runtime.configure(consumer)
            waits[consumer.name] = consumer.consumer_overrides["fetch_max_wait_ms"]
    finally:
        runtime.db.dispose()
    order_path = {
        "ingest": "ingest-raw",
        "profile": "profile-events",
        "segment": "segment",
        "campaign": "campaign-projections",
    }[service]
    assert waits.pop(order_path) == 80
    assert waits and set(waits.values()) == {900}, waits
    # and every service's API key feed is a side consumer too
    api = app.create_app(config.Settings(data_dir=tmp_path))
    assert api.state.key_feed.fetch_max_wait_ms == 900


@pytest.mark.parametrize("service", ["ingest", "profile", "segment", "campaign"])
def test_a_service_s_jobs_run_once_when_its_api_and_consumers_run_apart(
    service: str, tmp_path
) -> None:
    """``serve`` runs every periodic job; with the API and the consumers in two processes
    (``api`` and ``consume``: CRM_RUN_LAYOUT=api-apart, or replicas of each) a sweep, a
    rescoring, a fit or the scheduler runs beside the consumers only, and the gauges an
    API's /metrics shows in the API process only."""
    import importlib

    app = importlib.import_module(f"services.{service}.app")
    config = importlib.import_module(f"services.{service}.config")
    runtime = app.create_runtime(config.Settings(data_dir=tmp_path))
    try:

        def names(**where: bool) -> set[str]:
            return {job.name for job in runtime.jobs_for(**where)}

        every = {job.name for job in runtime.jobs}
        served, api, consumers = (
            names(consumers=True, api=True),
            names(consumers=False, api=True),
            names(consumers=True, api=False),
        )
    finally:
        runtime.db.dispose()
    assert served == every
    assert api | consumers == every  # nothing is lost by running apart
    twice = api & consumers
    assert all(job.where == "any" for job in runtime.jobs if job.name in twice)
    assert f"{service}-retention" in twice and f"{service}-topics" in twice
    placed = {
        "segment": (
            {"segment-business-gauges", "segment-clv-gauges"},
            {
                "segment-day-sweep",
                "segment-rescoring",
                "segment-cut-point-check",
                "segment-clv-fit",
            },
        ),
        "campaign": ({"campaign-business-gauges"}, {"campaign-scheduler"}),
        "profile": ({"profile-apikeys"}, {"profile-erasures"}),
        "ingest": (set(), set()),
    }[service]
    assert api - twice == placed[0]
    assert consumers - twice == placed[1]


def test_the_service_command_line_sets_the_gil_switch_interval(monkeypatch, tmp_path) -> None:
    """``CRM_GIL_SWITCH_INTERVAL_MS`` reaches the interpreter of a served API (default 1 ms)."""
    import sys

    import uvicorn

    from services.segment.config import Settings
    from shared import cli

    saved = sys.getswitchinterval()
    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    monkeypatch.setattr(cli, "tune_gc", lambda: None)  # the test process's heap stays as is
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    try:
        for value, expected in ((None, 0.001), ("2.5", 0.0025)):
            if value is None:
                monkeypatch.delenv("CRM_GIL_SWITCH_INTERVAL_MS", raising=False)
            else:
                monkeypatch.setenv("CRM_GIL_SWITCH_INTERVAL_MS", value)
            sys.setswitchinterval(0.005)
            code = cli.run_cli(
                settings_factory=lambda: Settings(data_dir=tmp_path),
                runtime_factory=lambda settings: None,  # type: ignore[arg-type,return-value]
                app_factory=lambda settings: "app",
                argv=["api"],
            )
            assert code == 0 and served[-1] == "app"
            assert sys.getswitchinterval() == pytest.approx(expected)
    finally:
        sys.setswitchinterval(saved)


def test_the_consume_command_runs_the_consumers_and_not_the_api_s_jobs(
    monkeypatch, tmp_path
) -> None:
    """``python -m services.<name> consume`` starts its runtime with the consumers and as a
    process that serves no API (so it runs the consumers' jobs, not the API's)."""
    import signal
    import sys

    from services.segment.config import Settings
    from shared import cli

    class Recorder:
        def __init__(self) -> None:
            self.started: dict[str, object] = {}
            self.stopped = False

        def request_stop(self) -> None: ...

        def start(self, **options: object) -> None:
            self.started = options

        def wait(self) -> None: ...

        def stop(self) -> None:
            self.stopped = True

    runtime = Recorder()
    monkeypatch.setattr(cli, "tune_gc", lambda: None)
    monkeypatch.setattr(cli, "freeze_startup_heap", lambda: None)
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    interval = sys.getswitchinterval()
    try:
        code = cli.run_cli(
            settings_factory=lambda: Settings(data_dir=tmp_path),
            runtime_factory=lambda settings: runtime,  # type: ignore[arg-type,return-value]
            app_factory=lambda settings: "app",
            argv=["consume"],
        )
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        sys.setswitchinterval(interval)
    assert code == 0 and runtime.stopped
    assert runtime.started == {"run_consumers": True, "serving_api": False}
