"""Daily series and reports as CSV and as a printable HTML page (server-rendered, no assets).

The columns are the DayFigures fields in one order, shared by every format, so the CSV, the
HTML and the JSON say the same numbers.
"""

from __future__ import annotations

import csv
import io
from html import escape

from service.regions.model import DailyReport, DailySeries, DayFigures

COLUMNS: list[tuple[str, str]] = [
    ("in_quarantine", "In quarantine 在隔"),
    ("admitted", "Admitted 新增入住"),
    ("released", "Released 解除隔离"),
    ("transferred", "Transferred 转运"),
    ("positives", "Positives 阳性"),
    ("exposure_reviews", "Exposure reviews 暴露排查"),
    ("missed_checkins", "Missed check-ins 漏报"),
    ("checkins_done", "Check-ins done"),
    ("checkins_due", "Check-ins due"),
    ("swabs_done", "Swabs done"),
    ("swabs_due", "Swabs due"),
    ("results", "Lab results"),
    ("turnaround_median_h", "Turnaround median h"),
    ("turnaround_p90_h", "Turnaround p90 h"),
    ("low_stock_items", "Low-stock items"),
    ("final", "Final"),
]


def _cell(f: DayFigures, name: str) -> str:
    value = getattr(f, name)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _csv(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def series_csv(series: DailySeries) -> str:
    return _csv(["day", "sites", *(c for c, _ in COLUMNS)], [[str(d.day), str(d.sites), *(_cell(d, c) for c, _ in COLUMNS)] for d in series.days])


def report_csv(report: DailyReport) -> str:
    rows = [[str(report.day), r.code, r.name, *(_cell(r.figures, c) for c, _ in COLUMNS)] for r in report.sites]
    rows.append([str(report.day), "TOTAL", report.region.name if report.region else "", *(_cell(report.totals, c) for c, _ in COLUMNS)])
    return _csv(["day", "site_code", "site_name", *(c for c, _ in COLUMNS)], rows)


_STYLE = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#111}
h1{font-size:1.4em;margin:0 0 .2em}p.meta{color:#555;margin:0 0 1em}
table{border-collapse:collapse;width:100%;font-size:.85em}
th,td{border:1px solid #999;padding:.3em .4em;text-align:right}
th{background:#eee}td.name,th.name{text-align:left}tr.total td{font-weight:bold;background:#f6f6f6}
@media print{body{margin:0}a{display:none}}
"""


def report_html(report: DailyReport) -> str:
    title = f"{escape(report.region.name) if report.region else '全部隔离点 All sites'} · {report.day} 日报 Daily report"
    head = "".join(f"<th>{escape(label)}</th>" for _, label in COLUMNS)
    body = "".join(
        f'<tr><td class="name">{escape(r.code)}</td><td class="name">{escape(r.name)}</td>'
        + "".join(f"<td>{escape(_cell(r.figures, c))}</td>" for c, _ in COLUMNS)
        + "</tr>"
        for r in report.sites
    )
    total = '<tr class="total"><td class="name" colspan="2">合计 Total</td>' + "".join(
        f"<td>{escape(_cell(report.totals, c))}</td>" for c, _ in COLUMNS
    ) + "</tr>"
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1>"
        f'<p class="meta">Generated {report.generated_at:%Y-%m-%d %H:%M} UTC · {len(report.sites)} sites · '
        "each site's local day; a day not yet over is marked Final: no</p>"
        f'<table><thead><tr><th class="name">Code</th><th class="name">Site</th>{head}</tr></thead>'
        f"<tbody>{body}{total}</tbody></table></body></html>"
    )
