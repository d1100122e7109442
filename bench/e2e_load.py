"""The end-to-end bench's load: realistic orders and the clients that send and read them.

Each client runs in its own process (``multiprocessing``, fork), so its CPU is not the
services' and the figures of the processes under test stay theirs. The HTTP clients are
minimal HTTP/1.1 over keep-alive sockets: a full client such as httpx costs more CPU per
request than the server it measures.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import random
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红"
PLACES = [
    ("浙江省", "杭州市", ["西湖区", "上城区", "滨江区", "余杭区"]),
    ("广东省", "深圳市", ["南山区", "福田区", "宝安区"]),
    ("广东省", "广州市", ["天河区", "越秀区", "海珠区"]),
    ("江苏省", "南京市", ["玄武区", "鼓楼区", "建邺区"]),
    ("上海市", "上海市", ["浦东新区", "徐汇区", "静安区"]),
    ("北京市", "北京市", ["朝阳区", "海淀区", "东城区"]),
    ("四川省", "成都市", ["锦江区", "武侯区", "高新区"]),
    ("湖北省", "武汉市", ["江汉区", "洪山区", "武昌区"]),
]
STREETS = ["文三路", "解放路", "人民路", "中山路", "建设路", "科技园路", "长江路", "和平街"]
CATALOGUE = [
    ("SCARF-01", "羊毛围巾", "accessories", "暖冬", 99.5),
    ("TEA-12", "西湖龙井 250g", "food", "狮峰", 268.0),
    ("SHOE-33", "跑步鞋 男款", "shoes", "飞跃", 359.0),
    ("MASK-05", "补水面膜 10片", "beauty", "素颜", 79.9),
    ("PHONE-CASE", "手机壳 透明", "electronics", "小米", 29.0),
    ("RICE-5KG", "东北大米 5kg", "food", "五常", 88.0),
    ("COAT-21", "羽绒服 女款", "apparel", "波司登", 1299.0),
    ("BOOK-7", "三体 全集", "books", "重庆出版社", 93.0),
    ("CUP-2", "保温杯 500ml", "home", "膳魔师", 189.0),
    ("TOY-9", "积木 城市系列", "toys", "乐高", 499.0),
]
STATUSES = ["paid"] * 6 + ["completed"] * 3 + ["shipped"]
CN = timedelta(hours=8)


class Orders:
    """Orders of skewed customers (a few buy often, most once: Zipf-like weights), Chinese
    names and addresses stable per customer, one to five items each."""

    def __init__(self, customers: int, seed: int, now: datetime | None = None) -> None:
        self.customers = customers
        self.rng = random.Random(seed)
        self.now = now or datetime.now(UTC)
        self.cumulative = list(itertools.accumulate(1 / (r + 1) ** 1.1 for r in range(customers)))
        self.seen: dict[str, int] = {}  # customer id -> orders generated for them

    def customer(self) -> int:
        return bisect.bisect(self.cumulative, self.rng.random() * self.cumulative[-1])

    def order(self, order_id: str, customer: int | str | None = None) -> dict[str, Any]:
        rng = self.rng
        c = self.customer() if customer is None else customer
        customer_id = f"cn_{c}" if isinstance(c, int) else c
        self.seen[customer_id] = self.seen.get(customer_id, 0) + 1
        person = random.Random(str(c))  # the same name, phone and address every time
        province, city, districts = person.choice(PLACES)
        items = []
        for sku, name, category, brand, price in rng.sample(CATALOGUE, rng.randint(1, 5)):
            items.append(
                {
                    "sku": sku,
                    "name": name,
                    "category": category,
                    "brand": brand,
                    "unit_price": f"{price:.2f}",
                    "quantity": rng.randint(1, 3),
                }
            )
        total = sum(float(i["unit_price"]) * i["quantity"] for i in items)
        created = self.now - timedelta(minutes=rng.randint(5, 200 * 24 * 60))
        paid = created + timedelta(minutes=rng.randint(1, 30))
        local = (paid + CN).replace(tzinfo=None).isoformat(timespec="seconds") + "+08:00"
        return {
            "order_id": order_id,
            "customer_id": customer_id,
            "status": rng.choice(STATUSES),
            "created_at": (created + CN).replace(tzinfo=None).isoformat(timespec="seconds")
            + "+08:00",
            "paid_at": local,
            "updated_at": local,
            "currency": "CNY",
            "total_amount": f"{total:.2f}",
            "refunded_amount": "0.00",
            "channel": rng.choice(["tmall", "jd", "douyin", "wechat"]),
            "items": items,
            "buyer": {
                "name": person.choice(SURNAMES) + "".join(person.sample(GIVEN, 2)),
                "mobile": f"+86 13{person.randint(5, 9)} {person.randint(0, 9999):04d} "
                f"{person.randint(0, 9999):04d}",
                "email": None,
            },
            "shipping": {
                "province": province,
                "city": city,
                "district": person.choice(districts),
                "address": f"{person.choice(STREETS)} {person.randint(1, 999)} 号 "
                f"{person.randint(1, 30)} 栋 {person.randint(101, 2505)} 室",
            },
        }

    def bodies(self, run: str, count: int, batch: int) -> list[bytes]:
        """POST bodies: ``{"orders": [...]}`` of ``batch`` orders, or single orders (batch 0)."""
        orders = [self.order(f"{run}-{i}") for i in range(count)]
        if batch <= 0:
            return [json.dumps(o, ensure_ascii=False).encode() for o in orders]
        return [
            json.dumps({"orders": orders[i : i + batch]}, ensure_ascii=False).encode()
            for i in range(0, count, batch)
        ]


def post_all(
    base: str, path: str, key: str, bodies: list[bytes], connections: int, rate: float, out: Any
) -> None:
    """Runs in the load process: POST every body over keep-alive connections, as fast as they
    are answered (rate 0) or paced to ``rate`` bodies/s from a fixed schedule (open loop)."""
    host, port = base.removeprefix("http://").split(":")
    position = [0]
    errors: list[int] = []

    async def connection(start: float) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while position[0] < len(bodies):
            i = position[0]
            position[0] += 1
            if rate:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            body = bodies[i]
            writer.write(
                f"POST {path} HTTP/1.1\r\nhost: {host}\r\nx-api-key: {key}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            if status not in (200, 202):
                errors.append(status)
        writer.close()

    async def main() -> None:
        start = time.perf_counter()
        await asyncio.gather(*(connection(start) for _ in range(connections)))

    started = time.perf_counter()
    asyncio.run(main())
    out.put((started, time.perf_counter(), errors[:5], len(errors)))


def get_at_rate(
    base: str, key: str, paths: list[str], rate: float, seconds: float, out: Any
) -> None:
    """Runs in a read-load process: open-loop GETs of random ``paths`` at ``rate``/s from 16
    threads; latency counts from the scheduled send time (so queueing counts). A server that
    cannot keep up is not waited for: requests not sent by twice the window (plus 2 s) count
    as infinitely late, so the percentiles say so instead of the bench running for minutes."""
    host, port = base.removeprefix("http://").split(":")
    total = int(rate * seconds)
    lock = threading.Lock()
    counter = [0]
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter() + 0.2
    give_up = start + 2 * seconds + 2

    def worker() -> None:
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        rnd = random.Random()
        while True:
            with lock:
                i = counter[0]
                counter[0] += 1
            if i >= total or time.perf_counter() > give_up:
                sock.close()
                return
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            request = (
                f"GET {rnd.choice(paths)} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n\r\n"
            )
            sock.sendall(request.encode())
            status = int(reader.readline().split()[1])
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            reader.read(length)
            if status != 200:
                errors[0] += 1
            latencies.append(time.perf_counter() - due)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    answered = len(latencies)
    latencies += [float("inf")] * (total - answered)
    out.put(
        {
            **percentiles(latencies),
            "requests": answered,
            "not_sent": total - answered,
            "errors": errors[0],
            "achieved_rps": round(answered / elapsed),
        }
    )


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 / p99 / max in milliseconds."""
    if not seconds:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(seconds)

    def q(p: float) -> float:
        # an unanswered request is infinitely late: JSON has no inf, so say 1e9 ms
        value = ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000
        return round(value, 2) if value != float("inf") else 1e9

    return {"p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": q(1.0)}
