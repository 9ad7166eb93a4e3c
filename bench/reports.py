"""`reports`: every report for the last 90 days at 1M messages / 200k contacts.

Floor: p95 server time at most 300 ms.
"""

from bench.common import BIG_ORG, BIG_SIZE, Figure, ensure_database, ensure_seeded
from bench.pages import manager_client, measure

REPORTS = ["opt_outs", "health", "delivery", "staff"]


def run():
    ensure_database()
    client = manager_client(ensure_seeded(BIG_ORG, *BIG_SIZE))
    import time

    from django.core.cache import cache

    figures = []
    for name in REPORTS:
        # Cold: nothing cached (the first view after the 14-day day summaries or the health
        # counts expired, or after a change of a number's state for health).
        cache.clear()
        started = time.perf_counter()
        client.get(f"/reports/{name}/?period=90")
        cold = (time.perf_counter() - started) * 1000
        figures.append(Figure("reports", f"{name}: cold, nothing cached", cold, "ms"))
        p50, p95, queries = measure(client, f"/reports/{name}/?period=90")
        figures += [
            Figure("reports", f"{name}: p50 at 1M", p50, "ms"),
            Figure("reports", f"{name}: p95 at 1M", p95, "ms", "<= 300 ms", p95 <= 300),
            Figure("reports", f"{name}: queries", queries, ""),
        ]
    return figures
