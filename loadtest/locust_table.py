"""Markdown table (requests, failures, req/s, p50/p95/p99 by endpoint) from a locust ``--csv`` run.

python -m loadtest.locust_table /tmp/storefront_stats.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def table(stats_csv: Path) -> str:
    with open(stats_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [
        "| endpoint | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["Name"] == "Aggregated", r["Name"])):
        name = "**all**" if r["Name"] == "Aggregated" else f"`{r['Name']}`"
        lines.append(f"| {name} | {int(r['Request Count']):,} | {int(r['Failure Count']):,} | {float(r['Requests/s']):,.1f} "
                     f"| {r['50%']} | {r['95%']} | {r['99%']} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
