"""Region normalisation every service shares: pure unit tests."""

from __future__ import annotations

import pytest

from shared.regions import (
    CITY_PINYIN_BY_PROVINCE,
    CITY_PINYIN_LOOKUP,
    CITY_PROVINCE,
    MUNICIPAL_DISTRICT_LOOKUP,
    MUNICIPALITIES,
    PROVINCES,
    Region,
    city_name,
    city_outside_province,
    normalize_region,
    province_name,
    split_address,
)


@pytest.mark.parametrize(
    ("province", "city", "address", "expected"),
    [
        ("浙江", "杭州", None, ("浙江省", "杭州市")),
        ("浙江省", "杭州市", None, ("浙江省", "杭州市")),
        ("广西", "南宁", None, ("广西壮族自治区", "南宁市")),
        ("内蒙", None, None, ("内蒙古自治区", None)),
        ("Zhejiang", None, None, ("浙江省", None)),
        (None, "杭州", None, ("浙江省", "杭州市")),
        ("北京", None, None, ("北京市", "北京市")),
        ("上海", "上海", None, ("上海市", "上海市")),
        (None, None, "浙江省 杭州市 西湖区 文三路100号", ("浙江省", "杭州市")),
        (None, None, "北京市朝阳区建国路1号", ("北京市", "北京市")),
        (None, None, "辽宁省朝阳市双塔区", ("辽宁省", "朝阳市")),
        # a province from the address never brings a city of another province with it
        ("浙江", None, "江苏省南京市鼓楼区", ("浙江省", None)),
        ("浙江", None, "南京市鼓楼区", ("浙江省", None)),
        ("火星", "奥林匹斯", None, ("火星", "奥林匹斯")),
    ],
)
def test_province_and_city_normalisation(
    province: str | None, city: str | None, address: str | None, expected: tuple[str, str]
) -> None:
    assert normalize_region(province, city, address=address)[:2] == expected


def test_a_city_of_another_province_is_kept_as_sent_and_reported() -> None:
    assert normalize_region("浙江", "南京") == Region("浙江省", "南京市", None)
    assert city_outside_province("浙江省", "南京市") == "江苏省"
    assert city_outside_province("浙江", "南京") == "江苏省"  # any spelling
    # a municipality naming another province's city is the same conflict
    assert normalize_region("北京", "南京") == Region("北京市", "南京市", None)
    assert city_outside_province("北京市", "南京市") == "江苏省"
    assert city_outside_province("北京市", "上海市") == "上海市"
    # the address does not overrule what was sent either
    assert normalize_region("浙江", "南京", address="浙江省杭州市")[:2] == ("浙江省", "南京市")


@pytest.mark.parametrize(
    ("province", "city"),
    [
        ("浙江省", "杭州市"),
        ("北京市", "北京市"),
        ("吉林省", "吉林市"),
        ("浙江省", None),
        (None, "南京市"),
        ("火星", "南京市"),  # an unknown province: nothing to compare
        ("浙江省", "奥林匹斯"),  # an unknown city: nothing to compare
    ],
)
def test_no_conflict_when_the_names_agree_or_are_unknown(
    province: str | None, city: str | None
) -> None:
    assert city_outside_province(province, city) is None


@pytest.mark.parametrize(
    ("province", "city", "district", "expected"),
    [
        ("重庆", "万州", None, ("重庆市", "重庆市", "万州区")),
        ("重庆市", "万州区", None, ("重庆市", "重庆市", "万州区")),
        ("重庆", "石柱", None, ("重庆市", "重庆市", "石柱土家族自治县")),
        ("重庆", "忠县", None, ("重庆市", "重庆市", "忠县")),
        ("上海", "浦东", None, ("上海市", "上海市", "浦东新区")),
        ("天津", "滨海新区", None, ("天津市", "天津市", "滨海新区")),
        # 朝阳 under 北京 is its district, not 辽宁's 朝阳市
        ("北京", "朝阳", None, ("北京市", "北京市", "朝阳区")),
        # an unknown name below a municipality can only be a district or a county
        ("北京", "回龙观", None, ("北京市", "北京市", "回龙观")),
        # the record's own district stays
        ("重庆", "万州", "龙都街道", ("重庆市", "重庆市", "龙都街道")),
        ("北京", "市辖区", None, ("北京市", "北京市", None)),
        ("北京", "北京", "朝阳区", ("北京市", "北京市", "朝阳区")),
        # the district table belongs to its municipality: 朝阳 is no district of 上海
        ("上海", "朝阳", None, ("上海市", "朝阳市", None)),
        # outside the municipalities the district is never touched
        ("浙江", "杭州", "西湖区", ("浙江省", "杭州市", "西湖区")),
    ],
)
def test_a_municipality_is_its_own_city_and_a_district_sent_as_city_moves(
    province: str, city: str, district: str | None, expected: tuple[str, str, str | None]
) -> None:
    assert normalize_region(province, city, district=district) == expected


def test_district_inferred_from_the_address_keeps_the_municipality_as_city() -> None:
    # the province comes from the address; the city sent is one of its districts
    assert normalize_region(None, "浦东新区", address="上海 浦东新区 世纪大道 1 号") == (
        "上海市",
        "上海市",
        "浦东新区",
    )


def test_normalising_twice_changes_nothing() -> None:
    for sent in (("重庆", "万州", None), ("浙江", "南京", None), ("北京", "朝阳", None)):
        once = normalize_region(*sent)
        assert normalize_region(*once) == once


def test_tables_are_consistent() -> None:
    assert set(MUNICIPALITIES) <= set(PROVINCES)
    assert set(CITY_PROVINCE.values()) <= set(PROVINCES)
    assert {m for m, _ in MUNICIPAL_DISTRICT_LOOKUP} == set(MUNICIPALITIES)
    # every district and county of the four municipalities (16, 16, 16 and 38)
    assert len(set(MUNICIPAL_DISTRICT_LOOKUP.values())) == 16 * 3 + 38


def test_names_and_addresses() -> None:
    assert province_name(" zhejiang ") == "浙江省"
    assert province_name("黑龙江") == "黑龙江省"
    assert city_name("杭 州") == "杭州市"
    assert city_name("北京") == "北京市"
    assert city_name("奥林匹斯") == "奥林匹斯"
    assert split_address("上海 上海市 浦东新区") == ("上海市", "上海市")
    assert split_address("内蒙古自治区呼和浩特市") == ("内蒙古自治区", "呼和浩特市")
    assert split_address("文三路 100 号") == (None, None)


@pytest.mark.parametrize(
    ("sent", "full"),
    [
        ("hangzhou", "杭州市"),
        ("Hangzhou", "杭州市"),
        ("Hang Zhou", "杭州市"),
        ("Hangzhou City", "杭州市"),
        ("hangzhoushi", "杭州市"),
        ("huangshi", "黄石市"),  # a city whose name ends in shi keeps it
        ("Xi'an", "西安市"),
        ("changzhi", "长治市"),  # 长 read chang in 长治, not zhang
        ("beijing", "北京市"),
        ("Harbin", "哈尔滨市"),
        ("suzhou", "suzhou"),  # 苏州 or 宿州: not guessed without a province
        ("olympus", "olympus"),
    ],
)
def test_city_pinyin_is_normalised_like_province_pinyin(sent: str, full: str) -> None:
    assert city_name(sent) == full


def test_a_pinyin_city_two_cities_share_is_resolved_by_the_province() -> None:
    assert normalize_region("jiangsu", "suzhou") == ("江苏省", "苏州市", None)
    assert normalize_region("安徽", "Suzhou") == ("安徽省", "宿州市", None)
    assert normalize_region(None, "suzhou") == (None, "suzhou", None)
    assert normalize_region(None, "hangzhou") == ("浙江省", "杭州市", None)
    assert city_outside_province("浙江", "nanjing") == "江苏省"


def test_every_known_city_has_a_pinyin_spelling() -> None:
    spelled = set(CITY_PINYIN_LOOKUP.values()) | set(CITY_PINYIN_BY_PROVINCE.values())
    assert spelled == set(CITY_PROVINCE)
