"""The segment service's reports as terminal tables (rich) and PNG charts (matplotlib)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rich.table import Table

from services.ingest.reference import CURRENCY_MINOR_UNITS

REPORTS = ("rfm", "lifecycle", "funnel", "quadrants", "regions")


def shown(amount: Any, currency: str) -> str:
    """An amount as presented: rounded (half up) to the currency's minor unit (CNY 2, JPY 0,
    KWD 3); the API keeps more decimals for averages (``"123.4567"`` -> ``123.46``)."""
    digits = CURRENCY_MINOR_UNITS.get(currency.upper(), 2)
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return str(amount)
    return str(value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def money(value: Any) -> str:
    """``{"CNY": "12.3456"}`` as ``CNY 12.35`` (one line per currency, minor unit)."""
    if isinstance(value, dict):
        return ", ".join(f"{cur} {shown(amount, cur)}" for cur, amount in value.items()) or "-"
    return "-" if value is None else str(value)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        if all(isinstance(v, int) for v in value.values()):
            return ", ".join(f"{k} {v}" for k, v in value.items())
        return money(value)
    return "-" if value is None else str(value)


def rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Any list of flat report rows as a table, columns in the rows' order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    table = Table(title=title)
    if not rows:
        table.add_column("(none)")
        return table
    for column in columns:
        numeric = all(isinstance(r.get(column), int | float) for r in rows if column in r)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def rfm_matrix(grid: list[dict[str, Any]]) -> list[list[int]]:
    """Customers per cell, indexed [r_score - 1][f_score - 1]."""
    matrix = [[0] * 5 for _ in range(5)]
    for cell in grid:
        r, f = int(cell["r_score"]), int(cell["f_score"])
        if 1 <= r <= 5 and 1 <= f <= 5:
            matrix[r - 1][f - 1] = int(cell["customers"])
    return matrix


def tables(report: dict[str, Any]) -> list[Table]:
    """The tables that show one report (``GET /v1/reports/{name}``'s body)."""
    name = report["report"]
    rows = report["rows"]
    heading = f"{name} as of {report.get('as_of')} (policy v{report.get('policy_version')})"
    if name == "rfm":
        body = rows[0] if rows else {"grid": [], "segments": []}
        grid = Table(title=f"RFM grid: customers per R (rows) x F (columns) - {heading}")
        grid.add_column("R \\ F")
        for f in range(1, 6):
            grid.add_column(f"F{f}", justify="right")
        matrix = rfm_matrix(body["grid"])
        for r in range(5, 0, -1):
            grid.add_row(f"R{r}", *(str(n) for n in matrix[r - 1]))
        return [grid, rows_table("RFM segments", body["segments"])]
    if name == "lifecycle" and rows and "distribution" in rows[0]:
        return [
            rows_table(f"lifecycle - {heading}", rows[0]["distribution"]),
            rows_table("lifecycle transitions", rows[0]["transitions"]),
        ]
    return [rows_table(f"{name} - {heading}", rows)]


def write_png(report: dict[str, Any], path: Path) -> Path:
    """One chart per report: a heat map for the RFM grid, bars for the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = report["report"]
    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    try:
        if name == "rfm":
            body = rows[0] if rows else {"grid": []}
            matrix = rfm_matrix(body["grid"])
            image = ax.imshow(matrix, origin="lower", cmap="YlOrRd")
            ax.set_xticks(range(5), [f"F{f}" for f in range(1, 6)])
            ax.set_yticks(range(5), [f"R{r}" for r in range(1, 6)])
            for r in range(5):
                for f in range(5):
                    ax.text(f, r, str(matrix[r][f]), ha="center", va="center", fontsize=9)
            fig.colorbar(image, ax=ax, label="customers")
            ax.set_title("RFM grid: customers per recency x frequency score")
        else:
            if name == "lifecycle" and rows and "distribution" in rows[0]:
                rows = rows[0]["distribution"]
            label_key = {
                "lifecycle": "lifecycle_stage",
                "funnel": "bucket",
                "quadrants": "value_quadrant",
            }.get(name, "province")
            if name == "regions":
                rows = sorted(rows, key=lambda r: -int(r["customers"]))[:20]
            labels = [
                " / ".join(str(r.get(k)) for k in ("province", "city") if r.get(k))
                if name == "regions"
                else str(r.get(label_key))
                for r in rows
            ]
            values = [int(r["customers"]) for r in rows]
            bars = ax.bar(range(len(values)), values, color="#3b7dd8")
            ax.bar_label(bars, fontsize=8)
            ax.set_xticks(
                range(len(labels)),
                _ascii_safe(labels),
                rotation=45 if name == "regions" else 0,
                ha="right" if name == "regions" else "center",
            )
            ax.set_ylabel("customers")
            ax.set_title(f"{name}: customers" + (" (top 20)" if name == "regions" else ""))
        fig.text(0.99, 0.01, f"as of {report.get('as_of')}", ha="right", fontsize=7, color="grey")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _ascii_safe(labels: list[str]) -> list[str]:
    """Labels the default font can draw: province names in Chinese get their pinyin-free
    fallback only when no CJK font is installed (matplotlib would draw empty boxes)."""
    from matplotlib import font_manager

    if any(ord(ch) > 0x2E80 for label in labels for ch in label) and not _cjk_font(font_manager):
        return [_latin(label) for label in labels]
    return labels


def _cjk_font(font_manager: Any) -> bool:
    import matplotlib

    for font in font_manager.fontManager.ttflist:
        if any(tag in font.name for tag in ("CJK", "Hei", "Song", "WenQuanYi", "Noto Sans SC")):
            matplotlib.rcParams["font.sans-serif"] = [font.name, "DejaVu Sans"]
            return True
    return False


_PINYIN = {
    "北京": "Beijing", "天津": "Tianjin", "上海": "Shanghai", "重庆": "Chongqing",
    "河北": "Hebei", "山西": "Shanxi", "辽宁": "Liaoning", "吉林": "Jilin",
    "黑龙江": "Heilongjiang", "江苏": "Jiangsu", "浙江": "Zhejiang", "安徽": "Anhui",
    "福建": "Fujian", "江西": "Jiangxi", "山东": "Shandong", "河南": "Henan",
    "湖北": "Hubei", "湖南": "Hunan", "广东": "Guangdong", "海南": "Hainan",
    "四川": "Sichuan", "贵州": "Guizhou", "云南": "Yunnan", "陕西": "Shaanxi",
    "甘肃": "Gansu", "青海": "Qinghai", "台湾": "Taiwan", "内蒙古": "Inner Mongolia",
    "广西": "Guangxi", "西藏": "Tibet", "宁夏": "Ningxia", "新疆": "Xinjiang",
    "香港": "Hong Kong", "澳门": "Macau",
}  # fmt: skip


def _latin(label: str) -> str:
    """A province's name in pinyin (the rest of the label, e.g. a city, dropped)."""
    for chinese, latin in _PINYIN.items():
        if label.startswith(chinese):
            rest = label.split(" / ", 1)[1:]
            return latin + (f" / {rest[0]}" if rest and rest[0].isascii() else "")
    return label if label.isascii() else "other"
