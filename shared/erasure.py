"""How every service remembers an erased customer without keeping their customer id.

After an erasure (``profile.erased``) each service keeps a tombstone, so that a replayed
topic or a late event cannot bring the customer back. The customer id itself is personal
data (a Taobao buyer nickname such as ``tb_zhangsan88``), so a tombstone holds only
:func:`tombstone_key` of it, and "is this id erased?" hashes the incoming id and looks
that up. All four services compute it this one way.

Why plain SHA-256 and not a keyed HMAC:

- A tombstone must answer "was this id erased?" for as long as any topic or export can
  replay the customer's events, i.e. for ever. With a keyed HMAC, losing or rotating the
  key would silently turn every tombstone into noise: the next replay would resurrect
  every erased customer, in every service, which is the one failure tombstones exist to
  prevent. The secret would also have to reach all four services (the embedded run, the
  compose file, every replica) and stay identical there, a new shared secret that today
  nothing needs.
- What the key would buy is narrow: the key would sit in the same process environment
  as the database, so it only protects a database file or backup that leaked without
  the configuration.
- What is left without a key: whoever holds a database file and *guesses* a customer id
  (nicknames are short; SHA-256 is fast to try) can confirm that this id was erased. A
  tombstone reveals nothing else (no data, no time beyond the erasure's), and someone
  who does not already know the id cannot read it back. So a tombstone is pseudonymous
  (a suppression record, the minimum kept to honour the erasure), not anonymous: treat
  the tables that hold them as personal data in backups and access control.

Changing to a keyed form later does not need the clear ids: ``HMAC(key, tombstone_key)``
can be computed from the stored digests, so a migration could convert them in place.

The digest is of the id exactly as the services key their rows (UTF-8, no case folding or
normalisation): ``TB_zhangsan88`` and ``tb_zhangsan88`` are different customers.
Profile stored its tombstones this way before this module existed; those stay valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

#: length of a :func:`tombstone_key` (hex SHA-256), for the columns that store one
TOMBSTONE_KEY_LENGTH = 64


def tombstone_key(customer_id: str) -> str:
    """The lowercase hex SHA-256 of the UTF-8 customer id: what a tombstone stores."""
    return hashlib.sha256(customer_id.encode()).hexdigest()


def tombstone_keys(customer_ids: Iterable[str]) -> dict[str, str]:
    """``{tombstone_key(id): id}`` for these ids: hash a batch once, map hits back to ids."""
    return {tombstone_key(customer_id): customer_id for customer_id in customer_ids}
