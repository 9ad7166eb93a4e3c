"""The history import's Twilio backend against Twilio's contract mock (TEST_SERVICES=twilio_mock):
the Messages list is read through TWILIO_BASE_URL, a day at a time with DateSent filters."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from twilio.http.http_client import TwilioHttpClient

from conversations import history
from conversations.backends import TwilioBackend
from conversations.models import HistoryImport
from deliverability.models import NumberFacts
from tests import factories

pytest_plugins = ["tests.conftest_twilio"]
pytestmark = pytest.mark.twilio_mock

EXAMPLE_DAY = datetime(2019, 5, 24, tzinfo=UTC)  # the contract example's messages


@pytest.fixture
def sent_params(monkeypatch):
    """The query parameters of each request twilio-python made."""
    sent = []
    request = TwilioHttpClient.request

    def recording(client, method, url, *args, **kwargs):
        sent.append(kwargs.get("params") or {})
        return request(client, method, url, *args, **kwargs)

    monkeypatch.setattr(TwilioHttpClient, "request", recording)
    return sent


def test_the_messages_list_is_read_through_the_base_url_with_date_filters(
    twilio_static, twilio_traffic, sent_params
):
    backend = TwilioBackend()

    listed = list(
        itertools.islice(
            backend.history(after=EXAMPLE_DAY, before=EXAMPLE_DAY + timedelta(days=1)), 2
        )
    )

    [url] = twilio_traffic.to("/Messages.json")
    assert url.startswith(f"{twilio_static}/2010-04-01/Accounts/")
    [params] = sent_params
    assert params["DateSent>"] == "2019-05-24T00:00:00Z"
    assert params["DateSent<"] == "2019-05-25T00:00:00Z"
    assert params["PageSize"] == 1000
    outbound, inbound = listed
    assert (outbound.direction, outbound.from_, outbound.to) == (
        "outbound",
        "+12019235161",
        "+18182008801",
    )
    assert outbound.status == "sent" and outbound.error_code is None
    assert outbound.messaging_service_sid == "MG" + "a" * 32
    assert outbound.sent_at == datetime(2019, 5, 24, 17, 44, 50, tzinfo=UTC)
    assert inbound.is_inbound and inbound.error_code == 30004 and inbound.body


def test_an_import_reads_each_day_once_and_stops_at_older_messages(
    org, twilio_static, twilio_traffic
):
    factories.make_sender(org, phone_number="+12019235161")
    record = history.history_import_start(org=org, days=3, run_in_background=False)

    done = history.history_import_run(record.pk)

    # The contract's example page holds messages of 2019: older than each day asked for, so
    # the list is not followed further (Twilio lists the newest first).
    assert done.state == HistoryImport.State.FINISHED
    assert len(twilio_traffic.to("/Messages.json")) == 3
    assert done.messages_read == 0
    assert not NumberFacts.objects.exists()
