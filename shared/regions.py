"""Chinese provinces, cities and the districts of the four municipalities: one way for
every service to normalise a region (浙江 -> 浙江省, 杭州 -> 杭州市) and to tell when a
record names a city of another province.

Pure data and lookups, no I/O. Unknown names are kept as sent: the tables hold every
provincial-level division but only the major (prefecture-level) cities.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from shared.region_pinyin import city_spellings, latin_keys

#: Every provincial-level division of China by its full official name, with its short forms.
PROVINCES: dict[str, tuple[str, ...]] = {
    "北京市": ("北京", "beijing"),
    "天津市": ("天津", "tianjin"),
    "上海市": ("上海", "shanghai"),
    "重庆市": ("重庆", "chongqing"),
    "河北省": ("河北", "hebei"),
    "山西省": ("山西", "shanxi"),
    "辽宁省": ("辽宁", "liaoning"),
    "吉林省": ("吉林", "jilin"),
    "黑龙江省": ("黑龙江", "heilongjiang"),
    "江苏省": ("江苏", "jiangsu"),
    "浙江省": ("浙江", "zhejiang"),
    "安徽省": ("安徽", "anhui"),
    "福建省": ("福建", "fujian"),
    "江西省": ("江西", "jiangxi"),
    "山东省": ("山东", "shandong"),
    "河南省": ("河南", "henan"),
    "湖北省": ("湖北", "hubei"),
    "湖南省": ("湖南", "hunan"),
    "广东省": ("广东", "guangdong"),
    "海南省": ("海南", "hainan"),
    "四川省": ("四川", "sichuan"),
    "贵州省": ("贵州", "guizhou"),
    "云南省": ("云南", "yunnan"),
    "陕西省": ("陕西", "shaanxi"),
    "甘肃省": ("甘肃", "gansu"),
    "青海省": ("青海", "qinghai"),
    "台湾省": ("台湾", "taiwan"),
    "内蒙古自治区": ("内蒙古", "内蒙", "inner mongolia", "neimenggu"),
    "广西壮族自治区": ("广西", "广西自治区", "guangxi"),
    "西藏自治区": ("西藏", "tibet", "xizang"),
    "宁夏回族自治区": ("宁夏", "宁夏自治区", "ningxia"),
    "新疆维吾尔自治区": ("新疆", "新疆自治区", "xinjiang"),
    "香港特别行政区": ("香港", "hong kong", "hongkong"),
    "澳门特别行政区": ("澳门", "macau", "macao"),
}

MUNICIPALITIES = frozenset({"北京市", "天津市", "上海市", "重庆市"})

_CITIES_BY_PROVINCE: dict[str, str] = {
    "河北省": "石家庄 唐山 秦皇岛 邯郸 邢台 保定 张家口 承德 沧州 廊坊 衡水",
    "山西省": "太原 大同 阳泉 长治 晋城 朔州 晋中 运城 忻州 临汾 吕梁",
    "辽宁省": "沈阳 大连 鞍山 抚顺 本溪 丹东 锦州 营口 阜新 辽阳 盘锦 铁岭 朝阳 葫芦岛",
    "吉林省": "长春 吉林 四平 辽源 通化 白山 松原 白城",
    "黑龙江省": "哈尔滨 齐齐哈尔 鸡西 鹤岗 双鸭山 大庆 伊春 佳木斯 七台河 牡丹江 黑河 绥化",
    "江苏省": "南京 无锡 徐州 常州 苏州 南通 连云港 淮安 盐城 扬州 镇江 泰州 宿迁",
    "浙江省": "杭州 宁波 温州 嘉兴 湖州 绍兴 金华 衢州 舟山 台州 丽水",
    "安徽省": "合肥 芜湖 蚌埠 淮南 马鞍山 淮北 铜陵 安庆 黄山 滁州 阜阳 宿州 六安 亳州 池州 宣城",
    "福建省": "福州 厦门 莆田 三明 泉州 漳州 南平 龙岩 宁德",
    "江西省": "南昌 景德镇 萍乡 九江 新余 鹰潭 赣州 吉安 宜春 抚州 上饶",
    "山东省": "济南 青岛 淄博 枣庄 东营 烟台 潍坊 济宁 泰安 威海 日照 临沂 德州 聊城 滨州 菏泽",
    "河南省": "郑州 开封 洛阳 平顶山 安阳 鹤壁 新乡 焦作 濮阳 许昌 漯河 三门峡 南阳 商丘 信阳 周口 驻马店",
    "湖北省": "武汉 黄石 十堰 宜昌 襄阳 鄂州 荆门 孝感 荆州 黄冈 咸宁 随州",
    "湖南省": "长沙 株洲 湘潭 衡阳 邵阳 岳阳 常德 张家界 益阳 郴州 永州 怀化 娄底",
    "广东省": "广州 韶关 深圳 珠海 汕头 佛山 江门 湛江 茂名 肇庆 惠州 梅州 汕尾 河源 阳江 清远 东莞 中山 潮州 揭阳 云浮",
    "海南省": "海口 三亚 三沙 儋州",
    "四川省": "成都 自贡 攀枝花 泸州 德阳 绵阳 广元 遂宁 内江 乐山 南充 眉山 宜宾 广安 达州 雅安 巴中 资阳",
    "贵州省": "贵阳 六盘水 遵义 安顺 毕节 铜仁",
    "云南省": "昆明 曲靖 玉溪 保山 昭通 丽江 普洱 临沧",
    "陕西省": "西安 铜川 宝鸡 咸阳 渭南 延安 汉中 榆林 安康 商洛",
    "甘肃省": "兰州 嘉峪关 金昌 白银 天水 武威 张掖 平凉 酒泉 庆阳 定西 陇南",
    "青海省": "西宁 海东",
    "台湾省": "台北 新北 桃园 台中 台南 高雄 基隆 新竹 嘉义",
    "内蒙古自治区": "呼和浩特 包头 乌海 赤峰 通辽 鄂尔多斯 呼伦贝尔 巴彦淖尔 乌兰察布",
    "广西壮族自治区": "南宁 柳州 桂林 梧州 北海 防城港 钦州 贵港 玉林 百色 贺州 河池 来宾 崇左",
    "西藏自治区": "拉萨 日喀则 昌都 林芝 山南 那曲",
    "宁夏回族自治区": "银川 石嘴山 吴忠 固原 中卫",
    "新疆维吾尔自治区": "乌鲁木齐 克拉玛依 吐鲁番 哈密",
}

#: The districts and counties of each municipality by full name (a municipality has no
#: cities below it: what a record gives as its city is one of these).
_MUNICIPAL_DISTRICTS: dict[str, str] = {
    "北京市": "东城区 西城区 朝阳区 丰台区 石景山区 海淀区 门头沟区 房山区 通州区 顺义区 "
    "昌平区 大兴区 怀柔区 平谷区 密云区 延庆区",
    "天津市": "和平区 河东区 河西区 南开区 河北区 红桥区 东丽区 西青区 津南区 北辰区 "
    "武清区 宝坻区 滨海新区 宁河区 静海区 蓟州区",
    "上海市": "黄浦区 徐汇区 长宁区 静安区 普陀区 虹口区 杨浦区 闵行区 宝山区 嘉定区 "
    "浦东新区 金山区 松江区 青浦区 奉贤区 崇明区",
    "重庆市": "万州区 涪陵区 渝中区 大渡口区 江北区 沙坪坝区 九龙坡区 南岸区 北碚区 綦江区 "
    "大足区 渝北区 巴南区 黔江区 长寿区 江津区 合川区 永川区 南川区 璧山区 铜梁区 潼南区 "
    "荣昌区 开州区 梁平区 武隆区 城口县 丰都县 垫江县 忠县 云阳县 奉节县 巫山县 巫溪县 "
    "石柱土家族自治县 秀山土家族苗族自治县 酉阳土家族苗族自治县 彭水苗族土家族自治县",
}

#: What official division lists put where a municipality's city would be.
_MUNICIPALITY_CITY_PLACEHOLDERS = frozenset({"市辖区", "县"})


def _short_district(full: str) -> str | None:
    """The everyday short form of a district name (浦东新区 -> 浦东, 石柱土家族自治县 -> 石柱),
    or None when it would be a single character (忠县 stays 忠县)."""
    for suffix in ("土家族苗族自治县", "苗族土家族自治县", "土家族自治县", "新区", "区", "县"):
        if full.endswith(suffix):
            short = full[: -len(suffix)]
            return short if len(short) > 1 else None
    return None


#: (municipality, any accepted spelling of one of its districts) -> the district's full name.
MUNICIPAL_DISTRICT_LOOKUP: dict[tuple[str, str], str] = {
    (municipality, spelling): full
    for municipality, names in _MUNICIPAL_DISTRICTS.items()
    for full in names.split()
    for spelling in (full, _short_district(full))
    if spelling
}

#: City (full name, with 市) -> its province (full name); municipalities map to themselves.
CITY_PROVINCE: dict[str, str] = {
    **{
        f"{city}市": province
        for province, names in _CITIES_BY_PROVINCE.items()
        for city in names.split()
    },
    **{m: m for m in MUNICIPALITIES},
}

#: Any accepted spelling of a province (full name, short form, pinyin) -> its full name.
PROVINCE_LOOKUP: dict[str, str] = {
    **{full: full for full in PROVINCES},
    **{alias: full for full, aliases in PROVINCES.items() for alias in aliases},
}

#: Any accepted spelling of a known city -> its full name.
CITY_LOOKUP: dict[str, str] = {
    **{city: city for city in CITY_PROVINCE},
    **{city[:-1]: city for city in CITY_PROVINCE if city.endswith("市")},
}

_CITY_SPELLINGS = {
    **city_spellings(),
    **{m: tuple(a for a in PROVINCES[m] if a.isascii()) for m in MUNICIPALITIES},
}
_PINYIN_CITIES: dict[str, set[str]] = {}
for _city, _spellings in _CITY_SPELLINGS.items():
    for _spelling in _spellings:
        _PINYIN_CITIES.setdefault(_spelling, set()).add(_city)

#: A city's Latin spelling -> its full name, where only one known city is spelt so
#: (suzhou, taizhou, fuzhou, yichun and yulin name two cities each and are not in here).
CITY_PINYIN_LOOKUP: dict[str, str] = {
    spelling: next(iter(cities)) for spelling, cities in _PINYIN_CITIES.items() if len(cities) == 1
}
#: (province, a city's Latin spelling) -> the city's full name: the province tells which
#: of two cities spelt alike is meant (江苏 + suzhou -> 苏州市, 安徽 + suzhou -> 宿州市).
CITY_PINYIN_BY_PROVINCE: dict[tuple[str, str], str] = {
    (CITY_PROVINCE[city], spelling): city
    for spelling, cities in _PINYIN_CITIES.items()
    for city in cities
}

# longest first, so 黑龙江省 matches before 黑龙江 and 内蒙古自治区 before 内蒙古
_PROVINCE_PREFIXES = sorted(
    (name for name in PROVINCE_LOOKUP if not name.isascii()), key=len, reverse=True
)
_CITY_PREFIXES = sorted(CITY_LOOKUP, key=len, reverse=True)
_NOT_CITY = frozenset("区县镇旗乡村路街")


class Region(NamedTuple):
    """A normalised region: full province and city names, and the district."""

    province: str | None
    city: str | None
    district: str | None


@lru_cache(maxsize=4096)
def province_name(value: str) -> str:
    """The full name of a province (浙江 -> 浙江省), or the value unchanged if unknown."""
    key = value.replace(" ", "")
    found = PROVINCE_LOOKUP.get(key) or PROVINCE_LOOKUP.get(value.strip().lower())
    return found or value


@lru_cache(maxsize=8192)
def city_name(value: str, province: str | None = None) -> str:
    """The full name of a known city (杭州, hangzhou, Hang Zhou -> 杭州市), or the value
    unchanged if unknown. A Latin spelling two cities share (suzhou) is resolved by the
    full ``province`` name when given, and otherwise kept as sent."""
    found = CITY_LOOKUP.get(value.replace(" ", ""))
    if found is not None or not value.isascii():
        return found or value
    for key in latin_keys(value):
        found = CITY_PINYIN_LOOKUP.get(key)
        if found is None and province is not None:
            found = CITY_PINYIN_BY_PROVINCE.get((province, key))
        if found is not None:
            return found
    return value


@lru_cache(maxsize=16384)
def split_address(address: str) -> tuple[str | None, str | None]:
    """Province and city at the start of a free-text Chinese address, if recognisable.

    ``浙江省 杭州市 西湖区 文三路100号`` -> (浙江省, 杭州市); ``上海 上海市 ...`` -> (上海市, 上海市).
    """
    text = address.replace(" ", "").replace("\u3000", "")
    province = city = None
    for prefix in _PROVINCE_PREFIXES:
        if text.startswith(prefix):
            province = PROVINCE_LOOKUP[prefix]
            text = text[len(prefix) :]
            break
    if province in MUNICIPALITIES:
        return province, province
    for prefix in _CITY_PREFIXES:
        # 朝阳区 is a district, not 朝阳市: a bare city name must not run into 区/县/镇
        if text.startswith(prefix) and text[len(prefix) : len(prefix) + 1] not in _NOT_CITY:
            city = CITY_LOOKUP[prefix]
            break
    if province is None and city is not None:
        province = CITY_PROVINCE[city]
    if city is None and province in MUNICIPALITIES:
        city = province
    return province, city


def normalize_region(
    province: str | None,
    city: str | None,
    district: str | None = None,
    address: str | None = None,
) -> Region:
    """Full province and city names; inferred from each other or the address when missing.

    A municipality (北京/上海/天津/重庆) is its own city: a district sent as its city
    (重庆 + 万州) becomes the district (万州区) unless the record has one. A city that
    belongs to another province (浙江 + 南京) is kept as sent, and nothing is inferred
    from it: :func:`city_outside_province` reports such records.
    """
    sent_city = city
    if province:
        province = province_name(province)
    if city:
        city = city_name(city, province)
    if not province and city:
        province = CITY_PROVINCE.get(city)
    if (not province or not city) and address:
        found_province, found_city = split_address(address)
        if not province:
            province = found_province
        if not city and (province == found_province or found_province is None):
            city = found_city
    if province in MUNICIPALITIES and city != province:
        city, district = _within_municipality(province, sent_city, city, district)
    return Region(province, city, district)


def _within_municipality(
    municipality: str, sent_city: str | None, city: str | None, district: str | None
) -> tuple[str | None, str | None]:
    """(city, district) of a record in a municipality whose city is not the municipality."""
    if not city or not sent_city:
        return municipality, district
    spelled = sent_city.replace(" ", "")
    # before the city table: 北京 + 朝阳 is 朝阳区, not 辽宁's 朝阳市
    known_district = MUNICIPAL_DISTRICT_LOOKUP.get((municipality, spelled))
    if known_district is not None:
        return municipality, district or known_district
    if spelled in _MUNICIPALITY_CITY_PLACEHOLDERS:
        return municipality, district
    if city in CITY_PROVINCE:
        # a city of another province is kept as sent: guessing which of the two names is
        # wrong would lose what was sent (city_outside_province reports it)
        return city, district
    # an unknown name: below a municipality it can only be a district or a county
    return municipality, district or city


def city_outside_province(province: str | None, city: str | None) -> str | None:
    """The province a known city really belongs to when the record names another one
    (浙江省 + 南京市 -> 江苏省); None when they agree or either name is unknown."""
    if not province or not city:
        return None
    named = province_name(province)
    actual = CITY_PROVINCE.get(city_name(city, named))
    if actual is None or named not in PROVINCES or actual == named:
        return None
    return actual
