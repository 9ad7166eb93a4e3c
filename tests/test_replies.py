"""What an inbound reply asks for (SPEC §3): deliverability.replies.classify and the rule it
names. The inbound pipeline's use of it is in test_webhook_inbound.py; its measured quality on
a corpus of member replies in test_reply_corpus.py."""

import pytest

from deliverability.replies import (
    Intent,
    ReviewKind,
    Rule,
    classify,
    correct,
    from_opt_out_type,
    normalize,
)

OPT_OUT_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]


def intent(body):
    return classify(body).intent


@pytest.mark.parametrize("word", [*OPT_OUT_WORDS, "OPT OUT"])
def test_each_opt_out_keyword_opts_out_in_any_case(word):
    for form in (word, word.lower(), word.capitalize()):
        assert classify(form) == classify(word)
        assert intent(form) == Intent.OPT_OUT


@pytest.mark.parametrize(
    "body", ["STOP\u3000", "\u2003STOP", "STOP\x0b", "STOP\x0c", "STOP\u2028", "STOP\x85"]
)
def test_unicode_whitespace_and_controls_around_a_keyword_do_not_hide_it(body):
    assert classify(body).intent == Intent.OPT_OUT
    assert classify(body).rule == Rule.KEYWORD


def test_normalisation_is_nfkc_casefolded_without_accents_or_punctuation():
    assert normalize("  ＳＴＯＰ!!! 🛑 ") == "stop"
    assert normalize("No   MÁS\u00a0mensajes…") == "no mas mensajes"
    assert normalize("Don’t text me") == "dont text me"
    assert normalize("S.T.O.P") == "stop"
    assert normalize(None) == ""


@pytest.mark.parametrize(
    "body",
    [
        "STOP ALL",
        "stop please",
        "STOP!!!",
        "stop now",
        "unsubscribe me",
        "cancel texts",
        "end messages",
        "Stop it",
        "Please stop",
    ],
)
def test_a_keyword_with_only_filler_words_opts_out(body):
    assert classify(body).intent == Intent.OPT_OUT
    assert classify(body).rule in {Rule.KEYWORD, Rule.KEYWORD_WITH_FILLER}


@pytest.mark.parametrize(
    "body",
    [
        "stop texting me",
        "take me off your list",
        "remove me",
        "don't text me anymore",
        "no more texts",
        "Please stop sending me these messages",
        "I want to opt out",
    ],
)
def test_clear_phrases_opt_out(body):
    assert classify(body).intent == Intent.OPT_OUT
    assert classify(body).rule in {Rule.PHRASE, Rule.KEYWORD_WITH_FILLER}


@pytest.mark.parametrize("body", ["stpo", "unsubscibe", "cancle", "qiut", "Stopp"])
def test_a_one_letter_slip_of_a_keyword_opts_out(body):
    assert classify(body).intent == Intent.OPT_OUT
    assert classify(body).rule == Rule.MISSPELLING


@pytest.mark.parametrize(
    "word", ["alta", "also", "quite", "suit", "shop", "pagar", "step", "start", "send", "quiet"]
)
def test_a_real_word_or_another_keyword_is_never_read_as_a_slip(word):
    assert correct(word) is None
    assert classify(word).intent != Intent.OPT_OUT


@pytest.mark.parametrize(
    "body", ["PARAR", "BAJA", "CANCELAR", "no más", "no mas", "no más mensajes", "no me manden más"]
)
def test_spanish_opt_outs(body):
    assert classify(body).intent == Intent.OPT_OUT


def test_alto_opts_out_only_as_the_whole_message():
    assert classify("ALTO").intent == Intent.OPT_OUT
    assert classify("Alto!").intent == Intent.OPT_OUT
    assert classify("el volumen está muy alto").intent == Intent.NONE


def test_wrong_number_has_its_own_rule():
    assert classify("wrong number") == classify("Sorry, WRONG NUMBER!")
    assert classify("wrong number").intent == Intent.OPT_OUT
    assert classify("wrong number").rule == Rule.WRONG_NUMBER


@pytest.mark.parametrize("body", ["START", "Start please", "COMENZAR", "start again"])
def test_start_opts_in_under_the_start_rule(body):
    assert classify(body).intent == Intent.OPT_IN
    assert classify(body).rule == Rule.START


@pytest.mark.parametrize("body", ["YES", "Yes 👍", "UNSTOP", "YES again"])
def test_yes_and_unstop_opt_in(body):
    assert classify(body).intent == Intent.OPT_IN
    assert classify(body).rule == Rule.OPT_IN_KEYWORD


@pytest.mark.parametrize("body", ["strat", "stat", "unstpo", "yess please text"])
def test_an_opt_in_keyword_is_never_guessed_from_a_misspelling(body):
    assert classify(body).intent != Intent.OPT_IN


@pytest.mark.parametrize(
    "body",
    [
        "please text me again",
        "opt me back in",
        "Sí",
        "quiero volver a recibir mensajes",
        "Oops, didn't mean to unsubscribe",
    ],
)
def test_other_resubscribe_wording_goes_to_review(body):
    reply = classify(body)
    assert reply.intent == Intent.REVIEW
    assert reply.review_kind == ReviewKind.RESUBSCRIBE
    assert reply.rule == Rule.RESUBSCRIBE_WORDING


@pytest.mark.parametrize("body", ["HELP", "info", "AYUDA", "Help please"])
def test_help(body):
    assert classify(body).intent == Intent.HELP


@pytest.mark.parametrize(
    "body", ["I want to cancel my membership", "stop sending me class times, just billing"]
)
def test_a_reply_whose_meaning_is_unclear_goes_to_review(body):
    reply = classify(body)
    assert reply.intent == Intent.REVIEW
    assert reply.review_kind == ReviewKind.OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "can you stop by at 5?",
        "don't stop the classes!",
        "end of the month works",
        "cancel my 3pm appointment",
        "See you at the bus stop",
        "Yes, 5pm works",
        "",
        None,
    ],
)
def test_benign_look_alikes_are_nothing(body):
    assert classify(body).intent == Intent.NONE


@pytest.mark.parametrize(
    "value, expected",
    [
        ("STOP", Intent.OPT_OUT),
        ("stop", Intent.OPT_OUT),
        ("START", Intent.OPT_IN),
        (" start ", Intent.OPT_IN),
        ("HELP", Intent.HELP),
        ("", None),
        (None, None),
        ("STOPALL", None),  # Twilio only ever sends STOP, START or HELP.
    ],
)
def test_twilio_advanced_opt_out_type_tells_what_twilio_already_did(value, expected):
    reply = from_opt_out_type(value)
    assert (reply.intent if reply else None) == expected


@pytest.mark.parametrize(
    "body", ["Who is this? Stop.", "I cancelled, stop", "Why do you keep texting me? STOP"]
)
def test_a_keyword_as_the_last_sentence_of_a_longer_message_opts_out(body):
    assert classify(body).intent == Intent.OPT_OUT
    assert classify(body).rule == Rule.KEYWORD_SENTENCE


@pytest.mark.parametrize(
    "body", ["Stop, you are making me blush", "Running late, stop by the desk?"]
)
def test_a_keyword_that_does_not_end_the_message_is_not_a_sentence_of_its_own(body):
    assert classify(body).intent != Intent.OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "deja de mandarme mensajes",
        "no quiero más mensajes",
        "I no longer want these messages",
        "Do not text",
        "Enough with the texts",
        "Remove",
    ],
)
def test_more_ways_of_saying_stop(body):
    assert classify(body).intent == Intent.OPT_OUT


@pytest.mark.parametrize("body", ["not interested", "I want out", "Cancel subscription"])
def test_replies_a_person_should_read(body):
    assert classify(body).intent == Intent.REVIEW
