"""Contact normalisation and masking (pure): e-mails, names, addresses, masks; mobiles go
through the platform's one E.164 normaliser, :func:`shared.phones.phone_e164`."""

from __future__ import annotations

import re
import unicodedata


def normalize_email(raw: str | None) -> str | None:
    """A trimmed, lower-cased e-mail (full-width characters folded), or None if not one."""
    if not raw:
        return None
    text = unicodedata.normalize("NFKC", raw).strip().lower()
    if "@" not in text or text.startswith("@") or text.endswith("@") or " " in text:
        return None
    return text


def normalize_text(raw: str | None) -> str | None:
    """Trimmed NFKC text (full-width Latin and digits folded), None if empty."""
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    return text or None


def names_conflict(a: str | None, b: str | None) -> bool:
    """Two names that are both known and differ (after removing spaces and case)."""
    if not a or not b:
        return False
    return _name_key(a) != _name_key(b)


def _name_key(name: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", name)).casefold()


def mask_phone(value: str | None) -> str | None:
    """``+8613800138000`` -> ``138****8000``: first three and last four digits kept."""
    if not value:
        return value
    digits = value[3:] if value.startswith("+86") else value.lstrip("+")
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_name(value: str | None) -> str | None:
    """``张三`` -> ``张*``, ``欧阳娜娜`` -> ``欧***``, ``John Smith`` -> ``J*** S****``."""
    if not value:
        return value
    words = value.split()
    if len(words) > 1:
        return " ".join(w[0] + "*" * (len(w) - 1) for w in words)
    return value[0] + "*" * max(len(value) - 1, 1)


def mask_email(value: str | None) -> str | None:
    """``zhangsan@example.com`` -> ``z***@example.com``."""
    if not value or "@" not in value:
        return value
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_handle(value: str | None) -> str | None:
    """A WeChat id or QQ number: first two and last two characters kept."""
    if not value:
        return value
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
