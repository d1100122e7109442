"""One normalisation of the small vocabularies every entry point sees: gender and sales
channel names. Ingest (REST, raw topics, import) and profile (PATCH) call the same
functions, so ``男`` from a PATCH and ``男`` from an order are the same ``male``."""

from __future__ import annotations

import unicodedata

GENDERS = {
    "male": "male",
    "m": "male",
    "man": "male",
    "男": "male",
    "男性": "male",
    "female": "female",
    "f": "female",
    "woman": "female",
    "女": "female",
    "女性": "female",
    "unknown": "unknown",
    "未知": "unknown",
    "保密": "unknown",
}

#: platform names as shops write them -> our channel name (lower-case latin)
CHANNELS = {
    "淘宝": "taobao",
    "淘宝网": "taobao",
    "天猫": "tmall",
    "天猫商城": "tmall",
    "京东": "jd",
    "jd.com": "jd",
    "京东商城": "jd",
    "拼多多": "pinduoduo",
    "pdd": "pinduoduo",
    "有赞": "youzan",
    "抖音": "douyin",
    "抖店": "douyin",
    "快手": "kuaishou",
    "微信": "wechat",
    "微店": "weidian",
    "小程序": "miniprogram",
}


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().lower()


def normalize_gender(value: str | None) -> str | None:
    """``male`` / ``female`` / ``unknown`` for the ways people write them (男, F, 保密, ...),
    ``None`` for anything else (the caller decides whether that is an error)."""
    if value is None:
        return None
    return GENDERS.get(_key(value))


def normalize_channel(value: str | None) -> str | None:
    """A sales channel name in one spelling: NFKC, trimmed, lower case, and the platforms'
    Chinese names mapped (淘宝 -> taobao, 京东 -> jd, 拼多多 -> pinduoduo). Unknown names
    are kept (lower-cased)."""
    if value is None:
        return None
    key = _key(value)
    if not key:
        return None
    return CHANNELS.get(key, key)
