"""A realistic Chinese e-commerce shop, generated: customers, two years of orders with the
11.11, 618 and Spring Festival peaks, flash sales, refunds, unpaid orders, reviews and
complaints. Pure and seeded: the same seed gives the same shop (relative to ``now``)."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鑫博文浩宇轩子涵欣怡梓萱雨晨思睿俊嘉一诺佳琪梦瑶晓东建国志强海燕春梅"
#: (province, weight, cities): weights roughly follow online spending
REGIONS: list[tuple[str, int, tuple[str, ...]]] = [
    ("广东省", 16, ("广州市", "深圳市", "东莞市", "佛山市", "珠海市")),
    ("浙江省", 12, ("杭州市", "宁波市", "温州市", "金华市")),
    ("江苏省", 11, ("南京市", "苏州市", "无锡市", "常州市")),
    ("上海市", 8, ("上海市",)),
    ("北京市", 7, ("北京市",)),
    ("山东省", 7, ("济南市", "青岛市", "烟台市")),
    ("四川省", 6, ("成都市", "绵阳市")),
    ("福建省", 5, ("福州市", "厦门市", "泉州市")),
    ("湖北省", 5, ("武汉市", "宜昌市")),
    ("河南省", 5, ("郑州市", "洛阳市")),
    ("湖南省", 4, ("长沙市", "株洲市")),
    ("安徽省", 3, ("合肥市", "芜湖市")),
    ("重庆市", 3, ("重庆市",)),
    ("天津市", 2, ("天津市",)),
    ("陕西省", 2, ("西安市",)),
    ("辽宁省", 2, ("沈阳市", "大连市")),
    ("云南省", 1, ("昆明市",)),
    ("广西壮族自治区", 1, ("南宁市", "桂林市")),
]
MOBILE_PREFIXES = ("134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182", "183", "187", "188", "130", "131", "132", "155", "156", "185", "186", "133", "153", "180", "181", "189", "177", "199")  # fmt: skip
ROADS = (
    "人民路",
    "解放路",
    "中山路",
    "建设路",
    "和平路",
    "文一路",
    "滨江大道",
    "长江路",
    "新华路",
    "科技路",
)
#: (channel, weight)
CHANNELS = [
    ("tmall", 34),
    ("jd", 24),
    ("douyin", 15),
    ("pinduoduo", 10),
    ("wechat_mini", 11),
    ("app", 6),
]
#: (sku, name, category, brand, price)
CATALOGUE = [
    ("TEA-001", "西湖龙井 250g", "茶叶", "狮峰", "168.00"),
    ("TEA-002", "普洱熟茶饼 357g", "茶叶", "大益", "239.00"),
    ("SKN-001", "玻尿酸保湿面膜 10片", "美妆", "润百颜", "99.00"),
    ("SKN-002", "防晒霜 SPF50", "美妆", "安热沙", "198.00"),
    ("ELE-001", "蓝牙耳机", "数码", "漫步者", "299.00"),
    ("ELE-002", "移动电源 20000mAh", "数码", "小米", "129.00"),
    ("HOM-001", "乳胶枕", "家居", "泰国乳胶", "159.00"),
    ("HOM-002", "四件套 纯棉", "家居", "罗莱", "459.00"),
    ("FOD-001", "坚果礼盒 1.5kg", "食品", "三只松鼠", "139.00"),
    ("FOD-002", "年货礼包", "食品", "良品铺子", "268.00"),
    ("APP-001", "羽绒服", "服饰", "波司登", "899.00"),
    ("APP-002", "运动鞋", "服饰", "李宁", "369.00"),
]
REVIEWS = {
    5: "质量很好，物流很快，好评！",
    4: "不错，包装完好",
    3: "一般般，凑合用",
    2: "和描述有差距",
    1: "质量太差了，不会再买",
}
COMPLAINTS = (
    "快递太慢，催了三次",
    "收到的商品有破损",
    "客服态度不好",
    "发票一直没开",
    "少发了一件",
)
#: Spring Festival (春节) dates: the weeks before it are a shopping peak
SPRING_FESTIVALS = (date(2024, 2, 10), date(2025, 1, 29), date(2026, 2, 17), date(2027, 2, 6))


def day_weight(day: date) -> float:
    """Relative order volume of a day: 11.11 and 618 build up to their day, Spring Festival
    shopping in the three weeks before it (and a lull during it), 12.12 and 双11 pre-sales."""
    weight = 1.0
    if day.month == 11 and day.day <= 11:
        weight += 0.5 + (9.0 if day.day == 11 else 0.12 * day.day)
    if day.month == 6 and day.day <= 18:
        weight += 0.3 + (5.0 if day.day == 18 else 0.06 * day.day)
    if day.month == 12 and day.day == 12:
        weight += 3.0
    for festival in SPRING_FESTIVALS:
        before = (festival - day).days
        if 0 < before <= 21:
            weight += 1.2
        elif -7 <= before <= 0:
            weight *= 0.4
    if day.weekday() >= 5:
        weight *= 1.15
    return weight


def flash_sale(day: date) -> str | None:
    if day.month == 11 and day.day == 11:
        return "双11 秒杀"
    if day.month == 6 and day.day == 18:
        return "618 秒杀"
    if day.month == 12 and day.day == 12:
        return "双12 秒杀"
    return None


@dataclass
class Shop:
    now: datetime
    customers: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _iso(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")


def generate(customers: int = 10_000, *, seed: int = 1111, now: datetime | None = None) -> Shop:
    """The shop as of ``now`` (default: now, minus a minute so nothing is in the future)."""
    rng = random.Random(seed)
    now = (now or datetime.now(SHANGHAI)) - timedelta(minutes=1)
    today = now.astimezone(SHANGHAI).date()
    start = today - timedelta(days=730)
    days = [start + timedelta(days=i) for i in range(731)]
    cumulative: list[float] = []
    total = 0.0
    for day in days:
        total += day_weight(day)
        cumulative.append(total)
    shop = Shop(now=now)
    region_weights = [w for _, w, _ in REGIONS]
    channel_names = [c for c, _ in CHANNELS]
    channel_weights = [w for _, w in CHANNELS]
    seq = 0
    for n in range(1, customers + 1):
        customer_id = f"demo-{n:05d}"
        province, _, cities = rng.choices(REGIONS, region_weights)[0]
        city = rng.choice(cities)
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        mobile = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        address = f"{rng.choice(ROADS)}{rng.randint(1, 999)}号{rng.randint(1, 30)}幢{rng.randint(101, 2802)}室"
        # customers keep joining, faster lately: signup day skewed to recent
        signup = int(730 * (1 - rng.random() ** 1.3))
        signup_day = days[min(signup, 729)]
        favourite_channel = rng.choices(channel_names, channel_weights)[0]
        shop.customers.append(
            {
                "customer_id": customer_id,
                "name": name,
                "gender": rng.choice(("male", "female", "female")),
                "birthday": f"{rng.randint(1965, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "mobile": mobile,
                "address": {"province": province, "city": city, "address": address},
                "source": favourite_channel,
                "updated_at": _iso(datetime.combine(signup_day, time(9), SHANGHAI)),
                "attributes": {"member_level": rng.choice(("普通", "银卡", "金卡", "钻石"))},
            }
        )
        # purchases: a long tail (Pareto): most buy once or twice, a few dozens of times;
        # about one in nine never pays (a prospect: only unpaid or cancelled orders)
        prospect = rng.random() < 0.11
        count = 1 if prospect else min(int(rng.paretovariate(1.35)), 40)
        low = cumulative[signup - 1] if signup > 0 else 0.0
        for _ in range(count):
            index = bisect.bisect_left(cumulative, rng.uniform(low, total))
            day = days[min(index, 730)]
            seq += 1
            order, extra = _order(rng, seq, customer_id, day, now, prospect, favourite_channel,
                                  name, mobile, province, city, address)  # fmt: skip
            shop.orders.append(order)
            shop.interactions.extend(extra)
    shop.orders.sort(key=lambda o: o["created_at"])
    return shop


def _order(
    rng: random.Random, seq: int, customer_id: str, day: date, now: datetime, prospect: bool,
    favourite_channel: str, name: str, mobile: str, province: str, city: str, address: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    created = datetime.combine(
        day, time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)), SHANGHAI
    )
    if created > now - timedelta(hours=1):  # today's orders: only those already paid and settled
        created = now - timedelta(minutes=rng.randint(60, 600))
    sale = flash_sale(day)
    lines = rng.choices(CATALOGUE, k=rng.choices((1, 2, 3), (70, 22, 8))[0])
    items: list[dict[str, Any]] = [
        {"sku": sku, "name": title, "category": cat, "brand": brand, "unit_price": price, "quantity": rng.choices((1, 2, 3), (80, 15, 5))[0]}
        for sku, title, cat, brand, price in lines
    ]  # fmt: skip
    gross = sum((Decimal(i["unit_price"]) * int(i["quantity"]) for i in items), Decimal(0))
    discount = (gross * Decimal(rng.choice(("0.2", "0.3", "0.5")))) if sale else Decimal(0)
    total = gross - discount
    roll = rng.random()
    age = now - created
    if prospect:
        status = "created" if roll < 0.7 or age < timedelta(days=1) else "cancelled"
    elif roll < 0.05:
        status = "refunded"
    elif roll < 0.07:
        status = "partially_refunded"
    elif roll < 0.10:
        status = "cancelled"
    elif age < timedelta(days=2):
        status = "paid"
    elif age < timedelta(days=7):
        status = "shipped"
    else:
        status = "completed"
    paid_at = (
        created + timedelta(seconds=rng.randint(20, 900))
        if status not in ("created", "cancelled")
        else None
    )
    updated = created + timedelta(minutes=rng.randint(1, 60))
    if status in ("shipped", "completed", "refunded", "partially_refunded"):
        updated = min(created + timedelta(days=rng.randint(1, 6)), now - timedelta(minutes=1))
    updated = max(updated, paid_at or created)
    updated = min(updated, now)
    order_id = f"D{day:%Y%m%d}{seq:07d}"
    order: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": status,
        "created_at": _iso(created),
        "paid_at": _iso(paid_at) if paid_at else None,
        "updated_at": _iso(updated),
        "currency": "CNY",
        "total_amount": _money(total),
        "discount_amount": _money(discount) if discount else None,
        "channel": favourite_channel
        if rng.random() < 0.8
        else rng.choice([c for c, _ in CHANNELS]),
        "shop_id": "flagship",
        "promotion": sale,
        "items": items,
        "buyer": {"name": name, "mobile": mobile},
        "shipping": {
            "province": province,
            "city": city,
            "address": address,
            "recipient": name,
            "mobile": mobile,
        },
    }
    if status == "refunded":
        order["refunded_amount"] = _money(total)
    elif status == "partially_refunded":
        order["refunded_amount"] = _money(total * Decimal("0.3"))
    extra: list[dict[str, Any]] = []
    after = min(updated + timedelta(days=rng.randint(1, 5)), now - timedelta(minutes=1))
    if status == "completed" and rng.random() < 0.3:
        rating = rng.choices((5, 4, 3, 2, 1), (60, 22, 9, 5, 4))[0]
        extra.append({"interaction_id": f"R-{order_id}", "customer_id": customer_id, "kind": "review",
                      "occurred_at": _iso(after), "order_id": order_id, "rating": rating,
                      "text": REVIEWS[rating], "channel": order["channel"]})  # fmt: skip
    if status != "created" and rng.random() < 0.02:
        extra.append({"interaction_id": f"C-{order_id}", "customer_id": customer_id, "kind": "complaint",
                      "occurred_at": _iso(after), "order_id": order_id, "text": rng.choice(COMPLAINTS),
                      "status": rng.choice(("open", "resolved")), "stage": "after_sale"})  # fmt: skip
    if status in ("refunded", "partially_refunded"):
        extra.append({"interaction_id": f"T-{order_id}", "customer_id": customer_id, "kind": "return",
                      "occurred_at": _iso(after), "order_id": order_id, "status": "completed"})  # fmt: skip
    return order, extra


CSV_COLUMNS = (
    "order_id", "customer_id", "status", "created_at", "paid_at", "updated_at", "currency",
    "total_amount", "refunded_amount", "discount_amount", "channel", "shop_id", "promotion",
    "buyer_name", "buyer_mobile", "province", "city", "address", "recipient", "shipping_mobile",
    "item_sku", "item_name", "item_category", "item_brand", "item_quantity", "item_unit_price",
)  # fmt: skip


def csv_rows(orders: list[dict[str, Any]]) -> list[list[str]]:
    """Orders as CSV rows of ingest's own header, a line-item export: one row per item,
    the order's fields repeated (ingest joins consecutive rows of one order id)."""
    rows = []
    for o in orders:
        for item in o["items"] or [{}]:
            s = o["shipping"]
            rows.append([
                o["order_id"], o["customer_id"], o["status"], o["created_at"], o["paid_at"] or "",
                o["updated_at"], o["currency"], o["total_amount"], o.get("refunded_amount") or "",
                o.get("discount_amount") or "", o["channel"], o["shop_id"], o.get("promotion") or "",
                o["buyer"]["name"], o["buyer"]["mobile"], s["province"], s["city"], s["address"],
                s["recipient"], s["mobile"], item.get("sku", ""), item.get("name", ""),
                item.get("category", ""), item.get("brand", ""), str(item.get("quantity", "")),
                item.get("unit_price", ""),
            ])  # fmt: skip
    return rows
