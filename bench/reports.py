"""`reports`: every report for the last 90 days at 1M messages / 200k contacts.

Floor: p95 server time at most 300 ms.
"""

from bench.common import BIG_ORG, BIG_SIZE, Figure, ensure_database, ensure_seeded
from bench.pages import manager_client, measure

REPORTS = ["opt_outs", "health", "delivery", "staff"]


def run():
    ensure_database()
    client = manager_client(ensure_seeded(BIG_ORG, *BIG_SIZE))
    figures = []
    for name in REPORTS:
        p50, p95, queries = measure(client, f"/reports/{name}/?period=90")
        figures += [
            Figure("reports", f"{name}: p50 at 1M", p50, "ms"),
            Figure("reports", f"{name}: p95 at 1M", p95, "ms", "<= 300 ms", p95 <= 300),
            Figure("reports", f"{name}: queries", queries, ""),
        ]
    return figures
