"""The reply classifier against a labelled corpus of member replies (SPEC §3).

Run with -s to see the figures: uv run pytest tests/test_reply_corpus.py -s
"""

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from deliverability.replies import OPT_OUT_KEYWORDS, Intent, classify
from tests.reply_corpus import CORPUS


def _share(entries, accepted):
    hits = sum(1 for body, *_ in entries if classify(body).intent in accepted)
    return hits / len(entries), [
        body for body, *_ in entries if classify(body).intent not in accepted
    ]


def figures():
    opt_outs = [e for e in CORPUS if e[1] == "opt_out"]
    keywords = [e for e in opt_outs if e[2] == "keyword"]
    benign = [e for e in CORPUS if e[1] == "benign"]
    resub_keywords = [e for e in CORPUS if e[1] == "resubscribe" and e[2] == "keyword"]
    resub_wording = [e for e in CORPUS if e[1] == "resubscribe" and e[2] == "wording"]
    false_opt_outs = [body for body, *_ in benign if classify(body).intent == Intent.OPT_OUT]
    return {
        "keyword entries opted out": _share(keywords, {Intent.OPT_OUT}),
        "opt-out coverage (opted out or review)": _share(opt_outs, {Intent.OPT_OUT, Intent.REVIEW}),
        "automatic opt-out recall": _share(opt_outs, {Intent.OPT_OUT}),
        "false opt-outs among benign": (len(false_opt_outs) / len(benign), false_opt_outs),
        "resubscribe keywords opted in": _share(resub_keywords, {Intent.OPT_IN}),
        "other resubscribe wording opted in or in review": _share(
            resub_wording, {Intent.OPT_IN, Intent.REVIEW}
        ),
    }


def test_the_corpus_is_large_and_labelled():
    assert len(CORPUS) >= 300
    assert {label for _, label, _ in CORPUS} == {"opt_out", "benign", "resubscribe"}
    assert len({body for body, *_ in CORPUS}) > 0.95 * len(CORPUS)


def test_the_classifier_meets_its_targets_on_the_corpus():
    results = figures()
    print(f"\nreply corpus: {len(CORPUS)} entries")
    for name, (share, missed) in results.items():
        print(f"  {name}: {share:.1%}" + (f"  (not: {missed!r})" if missed else ""))
    assert results["keyword entries opted out"][0] == 1.0
    assert results["opt-out coverage (opted out or review)"][0] >= 0.99
    assert results["automatic opt-out recall"][0] >= 0.95
    assert results["false opt-outs among benign"][0] <= 0.01
    assert results["resubscribe keywords opted in"][0] >= 0.99
    assert results["other resubscribe wording opted in or in review"][0] >= 0.95


# Every whitespace, control, punctuation mark and symbol (emoji included) of Unicode, except
# the few whose NFKC form holds a letter or digit ("℀" is "a/c") and the apostrophes, which
# join words.
_SEPARATORS = [
    chr(c)
    for c in range(0x110000)
    if unicodedata.category(chr(c))
    in {"Zs", "Zl", "Zp", "Cc", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So"}
    and not any(ch.isalnum() for ch in unicodedata.normalize("NFKC", chr(c)))
    and chr(c) not in "'’ʼ`´"
]
_EMOJI = ["🛑", "😡", "🙏", "👋", "❤️", "🚫", "👍🏽", "‼️"]
_WRAP = st.lists(st.sampled_from(_SEPARATORS + _EMOJI), max_size=4).map("".join)
_CASE = st.sampled_from([str.upper, str.lower, str.capitalize, str.swapcase])


@given(
    keyword=st.sampled_from(sorted(OPT_OUT_KEYWORDS | {"opt out"})),
    before=_WRAP,
    after=_WRAP,
    case=_CASE,
)
def test_any_keyword_wrapped_in_whitespace_punctuation_or_emoji_opts_out(
    keyword, before, after, case
):
    assert classify(before + case(keyword) + after).intent == Intent.OPT_OUT
