"""What the first broadcast of an org new to Reachable avoids, on the simulator's number plan.

The population is every `+1 212 555 01NN` (SPEC §9), one number per behaviour of the plan:
mobiles 00–44, reassigned since consent 45–49 (consent 90 days old), landlines 50–59, unknown
handsets 60–69 (line status `inactive` 60–64, `unknown` 65–69), flaky 70–79, carrier-filtered
80–84, VoIP 85–89, opted out at the carrier 90–94 (the history holds their STOP), deactivated
95–99. Each configuration starts from nothing: import, lookups with the org's packages,
yesterday's deactivation list, and optionally the account's Twilio history; then the first
broadcast's pre-send checks (the same code as `bench firstsend`, on one area code).
"""

import pytest

from bench.firstsend import run_configuration

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulator(settings):
    settings.SMS_BACKEND = "simulator"


def skipped_and_doomed(result, kind):
    counts = result["by_category"][kind]
    return counts["skipped"], counts["doomed"]


def test_with_line_type_only_the_first_broadcast_pays_for_the_disconnected_and_the_blocked(
    simulator,
):
    result = run_configuration("line type", with_history=False, npas=[212])

    assert skipped_and_doomed(result, "landline") == (10, 10)
    assert skipped_and_doomed(result, "deactivated") == (5, 5)
    assert skipped_and_doomed(result, "inactive") == (0, 5)
    assert skipped_and_doomed(result, "carrier STOP") == (0, 5)
    assert result["deliverable_skipped"] == 0


def test_with_line_status_and_the_history_it_skips_every_number_known_to_fail(simulator):
    result = run_configuration("all packages", with_history=True, npas=[212])

    for kind in ["landline", "deactivated", "inactive", "reassigned", "carrier STOP"]:
        skipped, doomed = skipped_and_doomed(result, kind)
        assert doomed and skipped == doomed, kind
    # The unknown handsets' 30005s in the history flag the ones line status could not see.
    assert skipped_and_doomed(result, "unknown status") == (5, 5)
    assert skipped_and_doomed(result, "mobile") == (0, 0)
    assert result["deliverable_skipped"] == 0
    assert result["avoided"] > 0.8 * result["doomed"]
