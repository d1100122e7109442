from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared import manifest
from shared.config import ServiceSettings, secrets_dir


class Settings(ServiceSettings):
    """Segment settings; env prefix ``SEGMENT_``."""

    service_name: ClassVar[str] = "segment"
    default_port: ClassVar[int] = manifest.service("segment").port
    model_config = SettingsConfigDict(
        env_prefix="SEGMENT_", secrets_dir=secrets_dir(), extra="ignore", populate_by_name=True
    )

    # every poll batch touches random order and customer pages (re-read from the OS with a
    # small cache) and dirties more than 1,000 pages: checkpoint every 10,000 instead, so
    # pages rewritten by consecutive batches are copied back once
    sqlite_cache_mib: int = 64
    sqlite_wal_autocheckpoint_pages: int = 10000

    #: how often the full rescoring runs (cut points recomputed, lifecycle swept); daily
    rescore_interval_seconds: float = 86400.0
    #: run the full rescoring once when the service starts
    rescore_at_start: bool = True
    #: how often to check whether the population outgrew the cut points (>10 %): then rescore
    cut_point_check_seconds: float = 300.0
    #: how often to check whether a day boundary (policy timezone) passed: then the day sweep
    #: rescores the customers the date moves (services/segment/sweep.py); well under a minute
    day_sweep_check_seconds: float = 15.0
    max_poll_records: int = 2500

    # predictive CLV (services/segment/predictive.py): the BG/NBD + Gamma-Gamma fit per
    # currency runs this often (and at start with the rescoring), then the rescoring
    # re-evaluates the custom segments that read predictions
    clv_fit_interval_seconds: float = 86400.0
    #: below any of these minimums a currency's fit publishes no numbers
    clv_min_customers: int = 100
    clv_min_repeat_customers: int = 20
    clv_min_history_days: int = 90
    #: predicted CLV: expected spend over this many 30-day months, discounted monthly
    clv_horizon_months: int = 12
    #: how often every process refreshes the CLV gauges from the database
    clv_gauge_seconds: float = 60.0
    clv_monthly_discount_rate: float = 0.01
