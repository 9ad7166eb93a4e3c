"""`pages`: the Failed & Disabled log and the Conversations list (with its filter counts).

Server time of whole requests through Django (middleware, view, template), in-process, at 10k
and at 1M messages (2k and 200k contacts). Floors: p95 at most 100 ms at 1M, and flat: p95 at
1M at most 1.5 times p95 at 10k. The query count must not grow with the table.
"""

from bench.common import (
    BIG_ORG,
    BIG_SIZE,
    SMALL_ORG,
    SMALL_SIZE,
    Figure,
    ensure_database,
    ensure_seeded,
    percentile,
)

PAGES = [
    ("Conversations list", "/conversations/"),
    ("Conversations, Invalid filter", "/conversations/?filter=invalid"),
    ("Failed & Disabled log", "/conversations/failed/"),
    (
        "Failed & Disabled, filtered",
        "/conversations/failed/?status=undelivered&category=unreachable",
    ),
]
REQUESTS, WARMUP = 40, 5


def manager_client(org):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from contacts.models import Membership

    user, _ = get_user_model().objects.get_or_create(username=f"bench-{org.slug}")
    Membership.objects.get_or_create(user=user, organization=org, defaults={"role": "manager"})
    client = Client()
    client.force_login(user)
    client.bench_user = user
    return client


def measure(client, url):
    """(p50 ms, p95 ms, queries) of GET url."""
    import time

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARMUP):
        assert client.get(url).status_code == 200, url
    durations = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url)
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return percentile(durations, 0.5), percentile(durations, 0.95), len(queries)


def fill_a_page_of_invalid(org, user):
    """Flatness compares the same work at two sizes: the small org's Invalid filter must fill
    a page too (2% of 2k contacts is about 40 rows, 1M's page has 50). Numbers are marked
    invalid by hand, as staff would, until a page and one more row are flagged."""
    from contacts.models import Contact
    from conversations.views import PAGE_SIZE
    from deliverability.models import NumberState

    invalid = NumberState.objects.for_org(org).invalid().values("phone")
    flagged = Contact.objects.for_org(org).filter(phone_e164__in=invalid).count()
    if flagged > PAGE_SIZE:
        return
    candidates = (
        Contact.objects.for_org(org)
        .exclude(phone_e164__in=NumberState.objects.for_org(org).values("phone"))
        .filter(conversation__isnull=False)
        .exclude(phone_e164="")
        .order_by("id")[: PAGE_SIZE + 1 - flagged]
    )
    for contact in candidates:
        NumberState.objects.of(org=org, phone=contact.phone_e164).mark_invalid(
            by=user, note="bench: a page of Invalid rows"
        )


def run():
    ensure_database()
    small = ensure_seeded(SMALL_ORG, *SMALL_SIZE)
    big = ensure_seeded(BIG_ORG, *BIG_SIZE)
    clients = {"10k": manager_client(small), "1M": manager_client(big)}
    fill_a_page_of_invalid(small, clients["10k"].bench_user)
    figures = []
    for label, url in PAGES:
        results = {size: measure(client, url) for size, client in clients.items()}
        (p50s, p95s, qs), (p50b, p95b, qb) = results["10k"], results["1M"]
        figures += [
            Figure("pages", f"{label}: p50 at 10k", p50s, "ms"),
            Figure("pages", f"{label}: p95 at 10k", p95s, "ms", "<= 100 ms", p95s <= 100),
            Figure("pages", f"{label}: p50 at 1M", p50b, "ms"),
            Figure("pages", f"{label}: p95 at 1M", p95b, "ms", "<= 100 ms", p95b <= 100),
            Figure(
                "pages", f"{label}: p95 1M / 10k", p95b / p95s, "x", "<= 1.5x", p95b / p95s <= 1.5
            ),
            Figure("pages", f"{label}: queries at 10k / 1M", qb, "", f"= {qs} at 10k", qb == qs),
        ]
    return figures
