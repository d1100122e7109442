"""Reference data for normalisation: ISO 4217 currencies, Chinese provinces and major cities,
and the shop platform's order statuses.

Pure data and lookups, no I/O.
"""

from __future__ import annotations

from functools import lru_cache

# --------------------------------------------------------------------------- currencies

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS = "CLF UYW"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD XCG YER ZAR ZMW ZWG"
)

#: ISO 4217 code -> number of minor units (decimals) of every active currency used as money.
CURRENCY_MINOR_UNITS: dict[str, int] = {
    **{code: 2 for code in _TWO_DECIMALS.split()},
    **{code: 0 for code in _ZERO_DECIMALS.split()},
    **{code: 3 for code in _THREE_DECIMALS.split()},
    **{code: 4 for code in _FOUR_DECIMALS.split()},
}

#: Common non-ISO spellings of the renminbi in Chinese exports.
CURRENCY_ALIASES = {"RMB": "CNY", "¥": "CNY", "￥": "CNY", "人民币": "CNY", "元": "CNY"}

# --------------------------------------------------------------------------- order statuses

#: Status names of the shop platform (Taobao / Tmall export) -> our status.
CHINESE_ORDER_STATUSES = {
    "等待买家付款": "created",
    "买家已付款，等待卖家发货": "paid",
    "买家已付款,等待卖家发货": "paid",
    "等待卖家发货": "paid",
    "卖家已发货，等待买家确认": "shipped",
    "卖家已发货,等待买家确认": "shipped",
    "等待买家确认收货": "shipped",
    "交易成功": "completed",
    "交易完成": "completed",
    "交易关闭": "cancelled",
    "交易已关闭": "cancelled",
    "已取消": "cancelled",
    "退款成功": "refunded",
    "已退款": "refunded",
    "部分退款": "partially_refunded",
}

# --------------------------------------------------------------------------- regions

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

# longest first, so 黑龙江省 matches before 黑龙江 and 内蒙古自治区 before 内蒙古
_PROVINCE_PREFIXES = sorted(
    (name for name in PROVINCE_LOOKUP if not name.isascii()), key=len, reverse=True
)
_CITY_PREFIXES = sorted(CITY_LOOKUP, key=len, reverse=True)
_NOT_CITY = frozenset("区县镇旗乡村路街")


@lru_cache(maxsize=4096)
def province_name(value: str) -> str:
    """The full name of a province (浙江 -> 浙江省), or the value unchanged if unknown."""
    key = value.replace(" ", "")
    found = PROVINCE_LOOKUP.get(key) or PROVINCE_LOOKUP.get(value.strip().lower())
    return found or value


@lru_cache(maxsize=8192)
def city_name(value: str) -> str:
    """The full name of a known city (杭州 -> 杭州市), or the value unchanged if unknown."""
    return CITY_LOOKUP.get(value.replace(" ", ""), value)


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
