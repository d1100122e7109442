from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared import manifest
from shared.config import ServiceSettings, secrets_dir


class Settings(ServiceSettings):
    """Profile settings; env prefix ``PROFILE_``."""

    service_name: ClassVar[str] = "profile"
    default_port: ClassVar[int] = manifest.service("profile").port
    model_config = SettingsConfigDict(
        env_prefix="PROFILE_", secrets_dir=secrets_dir(), extra="ignore", populate_by_name=True
    )

    # every poll batch reads and rewrites thousands of profile documents: with a 2 MiB page
    # cache the consumer ran 1.5x slower at 50,000 customers (bench/bench_profile.py); a
    # profile page rewritten by several batches reaches the main file once per checkpoint
    sqlite_cache_mib: int = 64
    sqlite_wal_autocheckpoint_pages: int = 10000

    # normalisation
    apikey_republish_check_seconds: float = Field(
        3.0,
        gt=0,
        description="how often profile checks that the broker still holds its managed keys "
        "(and queues them again if it lost them)",
    )
    erasure_overdue_minutes: float = Field(
        15.0,
        gt=0,
        description="an erasure a service has not acknowledged this long after it was "
        "requested is overdue: counted in crm_erasures_overdue and logged once",
    )
    erasure_check_seconds: float = Field(
        30.0, gt=0, description="how often profile refreshes the erasure gauges"
    )
    default_region: str = Field("CN", description="region of mobile numbers without +country")
    shop_timezone: str = Field(
        "Asia/Shanghai", description="zone used for purchase hours when the customer has none"
    )

    # identity resolution
    merge_on: list[str] = Field(
        default_factory=lambda: ["mobile", "email"],
        description="contact kinds whose shared verified value merges two profiles",
    )
    merge_requires_verified: bool = Field(
        True, description="only contacts verified on both sides merge profiles"
    )
    shared_contact_threshold: int = Field(
        3,
        ge=2,
        description="a contact seen on this many profiles is a shared one (household, shop "
        "assistant) and never merges anything automatically",
    )
    merge_blocked_on_name_conflict: bool = Field(
        True, description="two profiles with different names never merge automatically"
    )

    # derived facets and data quality
    stale_after_days: int = Field(365, ge=1, description="a field not seen for this long is stale")
    price_band_low_below: Decimal = Field(Decimal("100"), description="average unit price")
    price_band_high_from: Decimal = Field(Decimal("500"), description="average unit price")
    price_sensitivity_high_from: float = Field(0.5, description="share of discounted orders")
    price_sensitivity_medium_from: float = Field(0.2, description="share of discounted orders")
