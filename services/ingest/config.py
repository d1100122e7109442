from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared import manifest
from shared.config import ServiceSettings, secrets_dir


class Settings(ServiceSettings):
    """Ingest settings; env prefix ``INGEST_``."""

    service_name: ClassVar[str] = "ingest"
    default_port: ClassVar[int] = manifest.service("ingest").port
    model_config = SettingsConfigDict(
        env_prefix="INGEST_", secrets_dir=secrets_dir(), extra="ignore", populate_by_name=True
    )

    # validation and normalisation
    shop_timezone: str = Field(
        "Asia/Shanghai", description="IANA zone given to timestamps that carry no offset"
    )
    default_region: str = Field("CN", description="region of mobile numbers without +country")
    max_future_seconds: int = Field(
        3600, ge=0, description="how far in the future a timestamp may lie (clock skew)"
    )
    min_year: int = Field(
        1970, description="timestamps before this year are rejected (history of any age: 1970)"
    )
    max_amount: Decimal = Field(
        Decimal("100000000"), gt=0, description="largest money amount accepted (absolute)"
    )
    max_items_per_order: int = Field(500, ge=1)
    max_item_quantity: int = Field(100000, ge=1)
    max_batch_size: int = Field(5000, ge=1)
    max_text_length: int = Field(5000, ge=1, description="review / ticket text")
    max_attributes_bytes: int = Field(8192, ge=2)
    max_single_body_bytes: int = Field(256 * 1024, ge=1024)
    max_batch_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_import_bytes: int = Field(4 * 1024 * 1024 * 1024, ge=1024)

    # bulk import
    import_chunk_rows: int = Field(2000, ge=1)
    import_default_currency: str = "CNY"
    import_max_rejections_kept: int = Field(100000, ge=0)

    # delivery
    run_relay: bool = Field(
        True,
        description="publish the outbox from this process; false for extra API processes "
        "when a separate `consume` process relays (one relay per SQLite database)",
    )
    # detect an emptied broker and replay
    epoch_check_interval: float = Field(3.0, gt=0)

    # storage: batches append ~500 KiB each to the WAL; checkpointing (copy back + fsync)
    # in a background thread instead of in whichever commit crossed the threshold keeps the
    # writers going: bench_ingest batch 12,600 (every 1,000 pages) / 15,500 (10,000) /
    # 17,400 orders/s (background, every second), back to back on this machine
    sqlite_background_checkpoint_seconds: float = 1.0
    sqlite_wal_autocheckpoint_pages: int = 10000  # if the background checkpoint is off
