"""Topic names: part of the public contract (see PRODUCT.md)."""

from __future__ import annotations

RAW_ORDERS = "crm.raw.orders.v1"
RAW_CUSTOMERS = "crm.raw.customers.v1"
RAW_INTERACTIONS = "crm.raw.interactions.v1"
ORDERS = "crm.orders.v1"
CUSTOMERS = "crm.customers.v1"
INTERACTIONS = "crm.interactions.v1"
PROFILES = "crm.profiles.v1"
SEGMENTS = "crm.segments.v1"
CAMPAIGN_MESSAGES = "crm.campaign.messages.v1"
CAMPAIGN_RECEIPTS = "crm.campaign.receipts.v1"
DEADLETTER = "crm.deadletter.v1"
#: managed API keys (compacted, keyed by key id) and when each service last saw them used
APIKEYS = "crm.apikeys.v1"
APIKEY_USAGE = "crm.apikeys.usage.v1"
#: subject-access exports: profile asks (keyed by export id), each service answers its part
EXPORT_REQUESTS = "crm.exports.requests.v1"
EXPORT_PARTS = "crm.exports.parts.v1"
#: each service's acknowledgement that it applied an erasure (keyed by erasure id)
ERASURES_APPLIED = "crm.erasures.applied.v1"

RAW_TOPICS = (RAW_ORDERS, RAW_CUSTOMERS, RAW_INTERACTIONS)

#: ingest's own delivery-epoch marker (not part of the public contract)
INGEST_EPOCHS = "crm.ingest.epochs.v1"

#: The topics each service creates at start are in ``shared.manifest``; the public
#: contract's topics (the AsyncAPI channels) are ``shared.manifest.public_topics()``.
