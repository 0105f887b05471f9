"""Column layout of the Market's "stocks on warehouses" report family.

`POST v2/reports/stocks-on-warehouses/generate` yields one of three sheets, depending on the
model and on whether `campaignId` or `businessId` was sent. Each column has three spellings, one
per report format: UPPER_CASE in CSV, camelCase in JSON, a Russian caption in XLSX ("FILE").

Source of every name below (unless marked otherwise): the Market docs page
https://yandex.ru/dev/market/partner-api/doc/ru/reference/reports/generateStocksOnWarehousesReport.md
which includes `_auto/reports/stocks/stocks_on_warehouses.md`,
`_auto/reports/offers/mass/mass_shared_stocks_business_csv_config.md` and
`_auto/reports/offers/stocks_business_config.md`. The Market warns that columns may be added and
sheets renamed without notice, so parsers should key on CSV/JSON names and tolerate extras.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = frozenset({"str", "int", "float"})
# Excel refuses these in sheet titles and caps titles at 31 characters.
_XLSX_TITLE_FORBIDDEN = frozenset("[]:*?/\\")
_XLSX_TITLE_MAX = 31


@dataclass(frozen=True)
class Column:
    """One report column, spelled the way each report format spells it."""

    csv: str  # upper-case name used in CSV files, e.g. "SHOP_SKU"
    json: str  # camelCase name used in JSON files, e.g. "shopSku"
    xlsx: str  # Russian caption used in the XLSX file
    kind: str  # "str" | "int" | "float"  (how values of the column are typed)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.csv}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class Sheet:
    """One report sheet: its stable id (also the file stem inside CSV/JSON ZIPs) and columns."""

    name: str  # stable id and file stem in ZIPs: "stocks_on_warehouses" | "mass_shared_stocks" | "stocks_business"
    xlsx_title: str  # Russian sheet name in the XLSX
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        # Fail at import time rather than when openpyxl or a reader trips over a bad layout.
        if len(self.xlsx_title) > _XLSX_TITLE_MAX or _XLSX_TITLE_FORBIDDEN & set(self.xlsx_title):
            raise ValueError(f"sheet {self.name}: invalid XLSX title {self.xlsx_title!r}")
        for attr in ("csv", "json", "xlsx"):
            names = [getattr(c, attr) for c in self.columns]
            if len(set(names)) != len(names):
                raise ValueError(f"sheet {self.name}: duplicate {attr} column names")

    def column(self, csv_name: str) -> Column:
        """The column with this CSV name; KeyError if the sheet has none."""
        for col in self.columns:
            if col.csv == csv_name:
                return col
        raise KeyError(f"sheet {self.name} has no column {csv_name!r}")


# FBY / LaaS, campaignId: stock on the Market's own warehouses.
STOCKS_ON_WAREHOUSES = Sheet(
    name="stocks_on_warehouses",
    xlsx_title="Остатки на складе",
    columns=(
        Column("SHOP_SKU", "shopSku", "SSKU", "str"),
        Column("ARTICLE", "article", "Ваш SKU", "str"),
        Column("MARKET_SKU", "marketSku", "SKU на Яндексе", "int"),
        Column("PRODUCT_NAME", "productName", "Название товара", "str"),
        Column("VALID", "valid", "Годный", "int"),
        Column("RESERVED", "reserved", "Резерв", "int"),
        Column("AVAILABLE_FOR_ORDER", "availableForOrder", "Доступно для заказа", "int"),
        Column("QUARANTINE", "quarantine", "Карантин", "int"),
        Column("UTILIZATION", "utilization", "Передан на утилизацию", "int"),
        Column("DEFECT", "defect", "Брак", "int"),
        Column("EXPIRED", "expired", "Просрочен", "int"),
        Column("LENGTH", "length", "Длина, см", "int"),
        Column("WIDTH", "width", "Ширина, см", "int"),
        Column("HEIGHT", "height", "Высота, см", "int"),
        Column("WEIGHT", "weight", "Вес, кг", "float"),  # docs type: number
        Column("WAREHOUSE", "warehouse", "Склад", "str"),
        Column("SELLING_STATUS", "sellingStatus", "Статус продаж", "str"),
        Column("RECOMMENDATIONS", "recommendations", "Рекомендации", "str"),
        # The real caption carries the period: "Оборачиваемость за dd.mm.yy-dd.mm.yy" (docs give it
        # as a regex), so XLSX readers must match this one by prefix. Docs type it as string.
        Column("TURNOVER", "turnover", "Оборачиваемость", "str"),
    ),
)

# FBS / DBS / Express, campaignId: stock on that shop's own warehouse.
MASS_SHARED_STOCKS = Sheet(
    name="mass_shared_stocks",
    xlsx_title="Список товаров",
    columns=(
        Column("ERRORS", "errors", "Критичные ошибки", "str"),
        Column("WARNINGS", "warnings", "Некритичные ошибки", "str"),
        # The trailing " *" is part of the real caption (it marks required template fields).
        Column("SHOP_SKU", "shopSku", "Ваш SKU *", "str"),
        Column("PRODUCT_NAME", "productName", "Название товара", "str"),
        Column("COUNT", "count", "Доступное количество товара *", "int"),
    ),
)

# FBS / DBS / Express, businessId: stock on every shop warehouse of the business.
STOCKS_BUSINESS = Sheet(
    name="stocks_business",
    xlsx_title="Остатки на складах",
    columns=(
        Column("ERRORS", "errors", "Критичные ошибки", "str"),
        Column("SHOP_SKU", "shopSku", "Ваш SKU *", "str"),
        Column("PRODUCT_NAME", "productName", "Название товара", "str"),
        Column("PLACEMENT_TYPE", "placementType", "Модель работы", "str"),
        Column("WAREHOUSE_AND_SHOP", "warehouseAndShop", "Склад *", "str"),
        Column("COUNT", "count", "Доступно для заказа *", "int"),
        Column("RESERVE", "reserve", "Резерв", "int"),
        Column("PRICE", "price", "Цена", "str"),  # docs type PRICE as string, not number
        Column("STATUS", "status", "Статус", "str"),
        Column("COMMENT", "comment", "Примечание", "str"),
    ),
)

SHEETS: dict[str, Sheet] = {s.name: s for s in (STOCKS_ON_WAREHOUSES, MASS_SHARED_STOCKS, STOCKS_BUSINESS)}
