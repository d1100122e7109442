"""The one phone-number normaliser: text as customers and shops write it to E.164."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import phonenumbers

# libphonenumber's own pattern for Chinese mobile numbers: most numbers we see are these,
# and matching the pattern directly gives exactly its answer, many times faster
_CN_METADATA: Any = phonenumbers.PhoneMetadata.metadata_for_region("CN")
_CN_MOBILE = re.compile(str(_CN_METADATA.mobile.national_number_pattern))
_CN_MOBILE_TEXT = re.compile(r"(?:\+86|0086|86)?(1\d{10})")
_PHONE_PUNCTUATION = str.maketrans("", "", " -()./\t'")


#: what a phone number is written with: a leading +, digits and punctuation; anything else
#: (letters, #, ext., tel:) is junk libphonenumber would read past (an "x" as an extension,
#: letters as a vanity number) and so repair a number by guessing
_PHONE_TEXT = re.compile(r"[ (]*\+?[0-9 ()./\t-]+")


@lru_cache(maxsize=65536)
def phone_e164(text: str | None, region: str = "CN") -> str | None:
    """A phone number in E.164 (``+8613800138000``), or None when it is not a valid number.

    Full-width digits and plus signs, spaces, dashes, dots, slashes and brackets are
    accepted (and a leading ``'``, a spreadsheet's text marker); a number without ``+`` is
    read in ``region``, and a leading ``0086`` / ``86`` before a Chinese mobile is
    understood. Strict: text with anything else (letters, ``#``, ``ext.``, ``tel:``, a
    masked ``138****8000``) is no number, not one libphonenumber would guess at.
    """
    if not text:
        return None
    cleaned = unicodedata.normalize("NFKC", text).lstrip("'").strip()
    if _PHONE_TEXT.fullmatch(cleaned) is None:
        return None
    if region == "CN":
        found = _CN_MOBILE_TEXT.fullmatch(cleaned.translate(_PHONE_PUNCTUATION))
        if found is not None and _CN_MOBILE.fullmatch(found.group(1)):
            return "+86" + found.group(1)
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
