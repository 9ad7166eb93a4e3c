"""Inbound keywords (SPEC §3): the whole message decides, whatever its case, surrounding
whitespace or trailing punctuation; "reasonable means" only ever asks a person to review."""

import pytest

from deliverability.keywords import Keyword, classify, from_opt_out_type

OPT_OUT_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
OPT_IN_WORDS = ["START", "YES", "UNSTOP"]
HELP_WORDS = ["HELP", "INFO"]


@pytest.mark.parametrize("word", OPT_OUT_WORDS)
def test_each_opt_out_word_opts_out(word):
    assert classify(word) == Keyword.OPT_OUT
    assert classify(word.lower()) == Keyword.OPT_OUT
    assert classify(word.capitalize()) == Keyword.OPT_OUT


@pytest.mark.parametrize("word", OPT_IN_WORDS)
def test_each_opt_in_word_opts_in(word):
    assert classify(word) == Keyword.OPT_IN
    assert classify(word.lower()) == Keyword.OPT_IN
    assert classify(word.capitalize()) == Keyword.OPT_IN


@pytest.mark.parametrize("word", HELP_WORDS)
def test_each_help_word_asks_for_help(word):
    assert classify(word) == Keyword.HELP
    assert classify(word.lower()) == Keyword.HELP
    assert classify(word.capitalize()) == Keyword.HELP


@pytest.mark.parametrize(
    "body",
    [
        " stop. ",
        "Stop",
        "STOP!",
        "stop",
        "sToP",
        "\tSTOP\n",
        "STOP!!!",
        "Stop?",
        "  STOP  ",
        "stop,",
    ],
)
def test_case_whitespace_and_punctuation_around_the_word_do_not_matter(body):
    assert classify(body) == Keyword.OPT_OUT


@pytest.mark.parametrize("body", [" start. ", "Yes!", "unstop?", "\nSTART\n"])
def test_opt_in_words_ignore_case_whitespace_and_punctuation(body):
    assert classify(body) == Keyword.OPT_IN


@pytest.mark.parametrize("body", [" help? ", "Info.", "HELP!"])
def test_help_words_ignore_case_whitespace_and_punctuation(body):
    assert classify(body) == Keyword.HELP


@pytest.mark.parametrize(
    "body",
    [
        "stop by at 5?",
        "Stop by the front desk",
        "STOP NOW",
        "st op",
        "s.t.o.p",
        "unstoppable",
        "yes please",
        "help me with my booking",
        "Can I cancel my class?",
        "the end",
        "",
        "   ",
        None,
        "Thanks, see you Monday",
    ],
)
def test_a_keyword_inside_a_longer_message_is_not_a_keyword(body):
    assert classify(body) == Keyword.NONE


def test_a_plain_request_to_stop_is_flagged_for_review_only_when_reasonable_means_is_on():
    assert classify("please stop texting me", reasonable_means=True) == Keyword.REVIEW
    assert classify("please stop texting me") == Keyword.NONE
    assert classify("please stop texting me", reasonable_means=False) == Keyword.NONE


@pytest.mark.parametrize(
    "body",
    [
        "Please remove me from your list",
        "don't text me again",
        "no more texts please",
        "I want to unsubscribe from these",
        "Quit messaging me",
    ],
)
def test_reasonable_means_recognises_other_ways_of_asking_to_stop(body):
    assert classify(body, reasonable_means=True) == Keyword.REVIEW
    assert classify(body) == Keyword.NONE


@pytest.mark.parametrize("body", ["stop by at 5?", "See you at the bus stop", "Yes, 5pm works"])
def test_reasonable_means_leaves_ordinary_messages_alone(body):
    assert classify(body, reasonable_means=True) == Keyword.NONE


def test_an_exact_keyword_still_acts_when_reasonable_means_is_on():
    assert classify("STOP", reasonable_means=True) == Keyword.OPT_OUT
    assert classify("start", reasonable_means=True) == Keyword.OPT_IN
    assert classify("help", reasonable_means=True) == Keyword.HELP


@pytest.mark.parametrize(
    "value, expected",
    [
        ("STOP", Keyword.OPT_OUT),
        ("stop", Keyword.OPT_OUT),
        ("START", Keyword.OPT_IN),
        (" start ", Keyword.OPT_IN),
        ("HELP", Keyword.HELP),
        ("Help", Keyword.HELP),
        ("", None),
        (None, None),
        ("UNKNOWN", None),
        ("STOPALL", None),  # Twilio only ever sends STOP, START or HELP.
    ],
)
def test_twilio_advanced_opt_out_type_tells_what_twilio_already_did(value, expected):
    assert from_opt_out_type(value) == expected
