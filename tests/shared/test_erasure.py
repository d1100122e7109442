from __future__ import annotations

import hashlib

from shared.erasure import TOMBSTONE_KEY_LENGTH, tombstone_key, tombstone_keys


def test_a_tombstone_key_is_the_hex_sha256_of_the_utf8_id() -> None:
    # the published SHA-256 test vector of "abc" (FIPS 180-2): no salt, no key, no prefix,
    # so tombstones profile wrote before this module existed still match
    assert tombstone_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert tombstone_key("买家_张三") == hashlib.sha256("买家_张三".encode()).hexdigest()
    assert len(tombstone_key("tb_zhangsan88")) == TOMBSTONE_KEY_LENGTH


def test_a_tombstone_key_holds_no_part_of_the_id_and_keeps_ids_apart() -> None:
    key = tombstone_key("tb_zhangsan88")
    assert "zhangsan" not in key and key == key.lower()
    # ids are compared exactly as the services key their rows: no case folding
    assert tombstone_key("TB_zhangsan88") != key
    assert tombstone_key("tb_zhangsan88 ") != key


def test_tombstone_keys_map_each_key_back_to_its_id() -> None:
    ids = ["tb_zhangsan88", "wx_lisi", "13800138000"]
    keyed = tombstone_keys(ids)
    assert sorted(keyed.values()) == sorted(ids)
    assert all(tombstone_key(customer_id) == key for key, customer_id in keyed.items())
