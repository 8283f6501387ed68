"""Demo seed: a catalogue of ~30 items and two weeks of movements at every demo site.

Reads ``demo["sites"]``; fills ``demo["items"]`` (sku -> id). Set-based inserts: the
ledger trigger still applies each movement to the stock, so the ledger sums to the stock.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from service import bus

# sku, name, unit, category, usage rule, rate, target level
CATALOGUE: list[tuple[str, str, str, str, str, float, int]] = [
    ("PPE-N95", "N95 口罩", "piece", "ppe", "per_staff_shift", 2, 1200),
    ("PPE-MASK", "医用外科口罩", "piece", "ppe", "per_occupied_bed_day", 2, 3000),
    ("PPE-GOWN", "医用防护服", "piece", "ppe", "per_staff_shift", 1, 600),
    ("PPE-GLOVE", "一次性乳胶手套", "pair", "ppe", "per_staff_shift", 4, 2000),
    ("PPE-SHIELD", "防护面屏", "piece", "ppe", "per_staff_shift", 0.5, 300),
    ("PPE-COVER", "一次性鞋套", "pair", "ppe", "per_staff_shift", 2, 1000),
    ("PPE-CAP", "一次性医用帽", "piece", "ppe", "per_staff_shift", 1, 800),
    ("TST-SWAB", "核酸采样拭子", "piece", "testing", "per_swab", 1, 1500),
    ("TST-TUBE", "病毒采样管", "piece", "testing", "per_swab", 1, 1500),
    ("TST-ANTIGEN", "抗原检测试剂盒", "kit", "testing", "per_occupied_bed_day", 0.3, 500),
    ("TST-BAG", "标本转运袋", "piece", "testing", "per_swab", 0.1, 300),
    ("DIS-CHLOR", "含氯消毒片", "box", "disinfection", "fixed_per_day", 3, 120),
    ("DIS-ALCO", "75% 酒精", "litre", "disinfection", "per_staff_shift", 0.3, 200),
    ("DIS-HAND", "免洗手消毒液", "bottle", "disinfection", "per_staff_shift", 0.2, 150),
    ("DIS-SPRAY", "过氧化氢消毒液", "litre", "disinfection", "fixed_per_day", 4, 160),
    ("DIS-BAG", "医疗废物袋", "piece", "disinfection", "per_occupied_bed_day", 1, 1500),
    ("MED-THERM", "电子体温计", "piece", "medicine", "fixed_per_day", 1, 60),
    ("MED-PARA", "对乙酰氨基酚片", "box", "medicine", "per_occupied_bed_day", 0.02, 80),
    ("MED-LH", "连花清瘟胶囊", "box", "medicine", "per_occupied_bed_day", 0.05, 150),
    ("MED-OXI", "指夹血氧仪", "piece", "medicine", "fixed_per_day", 0.2, 20),
    ("FOOD-MEAL", "盒饭", "meal", "food", "per_occupied_bed_day", 3, 4000),
    ("FOOD-WATER", "瓶装水 550ml", "bottle", "food", "per_occupied_bed_day", 3, 4000),
    ("FOOD-MILK", "牛奶", "carton", "food", "per_occupied_bed_day", 1, 1500),
    ("FOOD-FRUIT", "水果", "kg", "food", "per_occupied_bed_day", 0.3, 400),
    ("FOOD-NOODLE", "方便面", "pack", "food", "fixed_per_day", 10, 300),
    ("DAY-TISSUE", "卷纸", "roll", "daily_necessities", "per_occupied_bed_day", 0.3, 600),
    ("DAY-TOWEL", "一次性毛巾", "piece", "daily_necessities", "per_occupied_bed_day", 0.5, 800),
    ("DAY-SOAP", "洗手液", "bottle", "daily_necessities", "per_occupied_bed_day", 0.05, 120),
    ("DAY-BRUSH", "牙刷牙膏套装", "set", "daily_necessities", "per_occupied_bed_day", 0.1, 300),
    ("DAY-BAG", "生活垃圾袋", "roll", "daily_necessities", "per_occupied_bed_day", 0.1, 200),
]

HISTORY_DAYS = 14

_STOCK = """
INSERT INTO supply_stock (site_id, item_id, reorder_level, target_level)
SELECT s, i.id, (i.target * 0.25)::int, i.target
FROM unnest($1::uuid[]) AS s
CROSS JOIN (SELECT id, t.target FROM supply_items JOIN unnest($2::text[], $3::int[]) AS t(sku, target) USING (sku)) AS i
ON CONFLICT DO NOTHING
"""

# Opening receipt two weeks ago, then one issue per day; every 7th item runs faster and ends low.
_MOVEMENTS = """
INSERT INTO supply_movements (site_id, item_id, kind, delta, reason, actor, recorded_at, created_at)
SELECT site_id, item_id, kind, delta, reason, 'system:demo', at, at
FROM (
    SELECT s.site_id, s.item_id, 'receipt' AS kind, s.target_level AS delta, 'opening stock' AS reason,
           now() - make_interval(days => $2) AS at, 0 AS seq
    FROM supply_stock s WHERE s.site_id = ANY($1::uuid[])
    UNION ALL
    SELECT s.site_id, s.item_id, 'issue', -greatest(1, (s.target_level / CASE WHEN r.n % 7 = 0 THEN 16.0 ELSE 22.0 END
                                                       * (0.8 + 0.4 * random()))::int),
           '', now() - make_interval(days => d) + interval '9 hours', $2 - d + 1
    FROM supply_stock s
    JOIN (SELECT id, row_number() OVER (ORDER BY sku) AS n FROM supply_items) r ON r.id = s.item_id
    CROSS JOIN generate_series(1, $2 - 1) AS d
    WHERE s.site_id = ANY($1::uuid[])
) m
ORDER BY site_id, item_id, seq
"""

_MARK_LOW = """
UPDATE supply_stock SET low = quantity < reorder_level
WHERE site_id = ANY($1::uuid[]) AND low <> (quantity < reorder_level)
"""


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    sites = list(demo.get("sites", []))
    await conn.executemany(
        """INSERT INTO supply_items (sku, name, unit, category, usage_rule, usage_rate)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sku) DO NOTHING""",
        [row[:6] for row in CATALOGUE],
    )
    demo["items"] = {r["sku"]: r["id"] for r in await conn.fetch("SELECT id, sku FROM supply_items")}
    if not sites:
        return
    await conn.execute(_STOCK, sites, [c[0] for c in CATALOGUE], [c[6] for c in CATALOGUE])
    await conn.execute(_MOVEMENTS, sites, HISTORY_DAYS)
    await conn.execute(_MARK_LOW, sites)
    for site_id in sites:
        generation = await conn.fetchval("SELECT generation FROM supply_stock_generations WHERE site_id = $1", site_id)
        await bus.emit(
            conn, "supplies.stock_seeded", site_id=site_id, actor="system:demo", data={"items": len(CATALOGUE), "generation": generation}
        )
