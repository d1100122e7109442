"""Personal data masked for readers without ``pii:read`` (pure)."""

from __future__ import annotations

from typing import Any

from services.profile.normalize import mask_email, mask_handle, mask_name, mask_phone

_MASKERS = {
    "name": mask_name,
    "wechat": mask_handle,
    "qq": mask_handle,
    "birthday": lambda v: (v[:4] + "-**-**") if isinstance(v, str) and len(v) >= 4 else v,
}


def mask_value(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field in ("mobiles", "phones"):
        return mask_phone(value)
    if field == "emails":
        return mask_email(value)
    if field == "address":
        masked = dict(value)
        if masked.get("address"):
            masked["address"] = "****"
        if masked.get("postal_code"):
            masked["postal_code"] = "****"
        return masked
    masker = _MASKERS.get(field)
    return masker(value) if masker else value


def mask_quality(quality: dict[str, Any]) -> dict[str, Any]:
    masked = dict(quality)
    masked["conflicts"] = [
        {
            **c,
            "value": mask_value(c["field"], c["value"]),
            "alternatives": [
                {**a, "value": mask_value(c["field"], a["value"])} for a in c["alternatives"]
            ],
        }
        for c in quality["conflicts"]
    ]
    return masked
