"""`firstsend`: the share of doomed sends the first broadcast avoids, by Lookup packages.

On a database of its own (`reachable_bench_fs`, created and migrated when missing): one org,
POPULATION contacts on the simulator's number plan (SPEC §9), every `+1 NPA 555 01NN` for NPAS
US area codes, so each behaviour of the plan has NPAS numbers: mobiles 00–44, reassigned 45–49
(consent 90 days old), landlines 50–59, unknown handsets 60–69 (line status `inactive` 60–64,
`unknown` 65–69), flaky 70–79, filtered 80–84, VoIP 85–89, opted out at the carrier 90–94,
deactivated 95–99. Each configuration starts from nothing: the contacts are imported, their
numbers looked up with the org's packages through the batch task (500 numbers a task, as an
import does), yesterday's deactivation list imported, and, with `--with-history`, the
account's Twilio history imported; then the first broadcast's pre-send checks run.

A send is *doomed* when the simulator would fail it (its create call or its final status) or
the number is no longer the member's (deactivated, or reassigned since consent). The figure per
configuration is the share of doomed sends the checks skip; floors: with every package on, every
landline, deactivated, line-status-`inactive` and reassigned number is skipped; in every
configuration no number that would have been delivered is skipped.

    uv run python -m bench.firstsend run PACKAGES [--with-history]   (the child; not for direct use)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import BenchmarkError, Figure, child_env, own_database

DATABASE = os.environ.get("BENCH_FIRSTSEND_DATABASE", "reachable_bench_fs")
ORG_SLUG = "bench-firstsend"
# US area codes (the reassigned-number check covers US numbers only): 20 × 100 = 2,000.
NPAS = [201, 202, 203, 205, 206, 207, 208, 209, 210, 212]
NPAS += [213, 214, 215, 216, 217, 218, 219, 224, 225, 228]
POPULATION = len(NPAS) * 100
CONSENT_DAYS_AGO = 90
# name: (line_type, line_status, reassigned)
CONFIGURATIONS = {
    "line type": (True, False, False),
    "line type + line status": (True, True, False),
    "all packages": (True, True, True),
}
HISTORY_DAYS = 400
ROOT = Path(__file__).resolve().parent.parent


def category(nn):
    """The plan's behaviour of a 555-01NN number, for the per-category counts."""
    for upper, name in [
        (45, "mobile"),
        (50, "reassigned"),
        (60, "landline"),
        (65, "inactive"),
        (70, "unknown status"),
        (80, "flaky"),
        (85, "filtered"),
        (90, "voip"),
        (95, "carrier STOP"),
        (100, "deactivated"),
    ]:
        if nn < upper:
            return name
    raise ValueError(nn)


# Must be skipped once every package is on (SPEC §2: what a lookup and the lists can know).
MUST_SKIP = {"landline", "deactivated", "inactive", "reassigned"}


def child(url, *args):
    command = [sys.executable, "-m", "bench.firstsend", *args]
    env = child_env(url, SMS_BACKEND="simulator", LOOKUP_RATE="1000000")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode == 3:
        raise BenchmarkError(done.stderr.strip().splitlines()[-1])
    if done.returncode:
        raise BenchmarkError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(with_history=None):
    if with_history is None:
        with_history = os.environ.get("BENCH_FIRSTSEND_HISTORY", "") == "1"
    url = own_database(DATABASE)
    figures = []
    suffix = " + history" if with_history else ""
    for name in CONFIGURATIONS:
        args = ["run", name, *(["--with-history"] if with_history else [])]
        result = child(url, *args)
        share = 100.0 * result["avoided"] / result["doomed"]
        kinds = ", ".join(
            f"{kind} {counts['skipped']}/{counts['doomed']}"
            for kind, counts in result["by_category"].items()
            if counts["doomed"]
        )
        print(
            f"  {name + suffix}: {result['avoided']} of {result['doomed']} doomed sends "
            f"avoided ({share:.1f} %); skipped/doomed by kind: {kinds}",
            flush=True,
        )
        figures.append(Figure("firstsend", f"doomed avoided, {name}{suffix}", share, "%", "", None))
        figures.append(
            Figure(
                "firstsend",
                f"deliverable skipped, {name}{suffix}",
                result["deliverable_skipped"],
                "numbers",
                "= 0",
                result["deliverable_skipped"] == 0,
            )
        )
        if name == "all packages":
            missed = sum(
                counts["doomed"] - counts["skipped"]
                for kind, counts in result["by_category"].items()
                if kind in MUST_SKIP
            )
            figures.append(
                Figure(
                    "firstsend",
                    "landline/deactivated/inactive/reassigned sent",
                    missed,
                    "numbers",
                    "= 0",
                    missed == 0,
                )
            )
    return figures


# The child: one configuration on a fresh org -----------------------------------------------


def _setup():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def history_available():
    """Whether this version has `manage.py import_twilio_history`; exit status 3 says not."""
    from django.core.management import get_commands

    if "import_twilio_history" not in get_commands():
        print("--with-history: no import_twilio_history command in this version", file=sys.stderr)
        sys.exit(3)


def history_step(org):
    """Import the account's Twilio history for `org` (`manage.py import_twilio_history`), as
    an org moving to Reachable would before its first broadcast."""
    from django.core.management import call_command

    call_command("import_twilio_history", "--org", org.slug, "--days", str(HISTORY_DAYS))


def run_configuration(name, with_history, npas=NPAS):
    from datetime import timedelta

    from django.utils import timezone

    from contacts.models import Contact, Organization
    from conversations.models import Sender
    from deliverability import deactivations, eligibility, tasks
    from deliverability.models import (
        DeactivationImport,
        LookupPackages,
        NumberFacts,
        NumberLookup,
    )
    from deliverability.number_plan import plan_for, reassigned_since

    if with_history:
        history_available()
    # From nothing: the facts are global, so the previous configuration's must go too.
    Organization.objects.filter(slug=ORG_SLUG).delete()
    NumberFacts.objects.all().delete()
    NumberLookup.objects.all().delete()
    DeactivationImport.objects.all().delete()

    org = Organization.objects.create(name="Bench First Send", slug=ORG_SLUG)
    Sender.objects.create(organization=org, phone_number="+16175559900", label="Main")
    line_type, line_status, reassigned = CONFIGURATIONS[name]
    LookupPackages.objects.create(
        organization=org, line_type=line_type, line_status=line_status, reassigned=reassigned
    )
    consent = timezone.localdate() - timedelta(days=CONSENT_DAYS_AGO)
    contacts = []
    for npa in npas:
        for nn in range(100):
            contact = Contact(organization=org, first_name="Member", last_name=f"{npa}-{nn:02d}")
            contact.set_phone(f"+1{npa}55501{nn:02d}")
            contact.consent_date = consent
            contacts.append(contact)
    Contact.objects.bulk_create(contacts, batch_size=1000)
    phones = sorted(c.phone_e164 for c in contacts)
    assert all(phones), "every number of the plan parses"

    for start in range(0, len(phones), 500):  # one lookup task per batch of an import
        tasks.lookup_numbers(phones[start : start + 500], org_id=org.pk)
    deactivations.import_deactivations(timezone.localdate() - timedelta(days=1))
    if with_history:
        history_step(org)

    verdicts = dict(
        eligibility.check_contacts(Contact.objects.filter(organization=org), org=org).values_list(
            "phone_e164", "skip_reason"
        )
    )
    by_category, doomed, avoided, deliverable_skipped = {}, 0, 0, 0
    for phone, skip in verdicts.items():
        entry = plan_for(phone)
        kind = category(int(phone[-2:]))
        fails = bool(entry.create_error) or entry.final_status != "delivered"
        # A deactivated number is delivered to whoever has it now: not the member who agreed.
        gone = entry.deactivated or reassigned_since(phone, consent) == "yes"
        is_doomed = fails or gone
        counts = by_category.setdefault(kind, {"numbers": 0, "doomed": 0, "skipped": 0})
        counts["numbers"] += 1
        counts["doomed"] += is_doomed
        counts["skipped"] += skip is not None
        doomed += is_doomed
        avoided += is_doomed and skip is not None
        deliverable_skipped += (not is_doomed) and skip is not None
    return {
        "configuration": name,
        "contacts": len(verdicts),
        "doomed": doomed,
        "avoided": avoided,
        "deliverable_skipped": deliverable_skipped,
        "by_category": by_category,
        "lookups": NumberLookup.objects.filter(organization=org).count(),
    }


def main(argv):
    if not argv or argv[0] != "run" or len(argv) < 2 or argv[1] not in CONFIGURATIONS:
        print(__doc__, file=sys.stderr)
        return 2
    _setup()
    print(json.dumps(run_configuration(argv[1], "--with-history" in argv[2:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
