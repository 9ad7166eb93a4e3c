"""What an inbound reply asks for (SPEC §3, FCC 2025 consent-revocation rules).

`classify(body)` answers opt_out / opt_in / help / review / none, with the rule that decided, for
every organization. The message is first reduced to its words: Unicode NFKC, casefolded, accents
dropped, and every character that is not a letter or a digit (whitespace of any kind, punctuation,
emoji, control characters) treated as a separator; apostrophes join ("don't" is "dont").

Opt-outs are generous on purpose: a keyword alone or with only filler words, a clear phrase, or a
one-letter slip of a keyword acts at once; a message that mentions stopping or cancelling but
whose meaning is unclear goes to a person (review). Opt-ins are strict: only the keywords, alone
or with filler, act at once; other resubscribe wording waits for staff.
"""

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    REVIEW = "review"  # A person decides; see Reply.review_kind.
    NONE = "none"


class Rule(StrEnum):
    """Why a reply was classified as it was; staff see the label in the Review queue."""

    KEYWORD = "keyword"
    KEYWORD_WITH_FILLER = "keyword_with_filler"
    KEYWORD_SENTENCE = "keyword_sentence"  # "Who is this? Stop."
    MISSPELLING = "misspelling"
    PHRASE = "phrase"
    SPANISH = "spanish"
    WRONG_NUMBER = "wrong_number"
    START = "start"  # START or COMENZAR: lifts every opt-out, even a wrong number's
    OPT_IN_KEYWORD = "opt_in_keyword"  # YES, UNSTOP
    HELP_KEYWORD = "help_keyword"
    MENTIONS_STOP = "mentions_stop"
    PARTIAL_REQUEST = "partial_request"
    RESUBSCRIBE_WORDING = "resubscribe_wording"
    TWILIO = "twilio_advanced_opt_out"
    NONE = "none"


RULE_LABELS = {
    Rule.KEYWORD: "Opt-out keyword",
    Rule.KEYWORD_WITH_FILLER: "Opt-out keyword with filler words",
    Rule.KEYWORD_SENTENCE: "Ends with an opt-out keyword as a sentence of its own",
    Rule.MISSPELLING: "Misspelt opt-out keyword",
    Rule.PHRASE: "Asks in plain words to stop texting",
    Rule.SPANISH: "Spanish opt-out",
    Rule.WRONG_NUMBER: "Says it is the wrong number",
    Rule.START: "START keyword",
    Rule.OPT_IN_KEYWORD: "Opt-in keyword",
    Rule.HELP_KEYWORD: "Help keyword",
    Rule.MENTIONS_STOP: "Mentions stopping or cancelling; meaning unclear",
    Rule.PARTIAL_REQUEST: "Asks to stop some messages only, or with conditions",
    Rule.RESUBSCRIBE_WORDING: "Asks to be texted again, in other words",
    Rule.TWILIO: "Twilio Advanced Opt-Out",
    Rule.NONE: "Nothing to act on",
}


class ReviewKind(StrEnum):
    OPT_OUT = "opt_out"  # a possible request to stop
    RESUBSCRIBE = "resubscribe"  # a possible request to be texted again


@dataclass(frozen=True)
class Reply:
    intent: Intent
    rule: Rule
    review_kind: ReviewKind | None = None


NOTHING = Reply(Intent.NONE, Rule.NONE)

# Revocations per se (47 CFR 64.1200(a)(12)) and Twilio's defaults; "opt out" is joined first.
OPT_OUT_KEYWORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
SPANISH_OPT_OUT_KEYWORDS = frozenset({"parar", "baja", "cancelar", "detener"})
OPT_IN_KEYWORDS = frozenset({"start", "unstop", "yes", "comenzar"})
START_KEYWORDS = frozenset({"start", "comenzar"})
HELP_KEYWORDS = frozenset({"help", "info", "ayuda"})
# Not keywords of the rule, but as clear when they are the whole message: "No more", "unsub".
OPT_OUT_WORDS = OPT_OUT_KEYWORDS | SPANISH_OPT_OUT_KEYWORDS | {"nomas", "nomore", "unsub", "remove"}
ALL_KEYWORDS = OPT_OUT_KEYWORDS | SPANISH_OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS


def _wordset(text):
    return frozenset(text.split())


def _pattern(*alternatives):
    """One regular expression of alternatives, each written in verbose form."""
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.VERBOSE)


# Words that add nothing to a keyword: "STOP ALL", "stop please", "unsubscribe me", "cancel
# texts", "YES again". A keyword with only these around it is the keyword.
FILLER = _wordset(
    """
    all please pls plz plse pleas now me my us i im it them this these that those the your you
    ur u to from of for off out list lists number text texts txt txts texting message
    messages msg msgs messaging sms sending thanks thank thx ty tks ok okay k kk yes asap
    immediately right away already just anymore again back everything forever permanently
    completely totally sorry sir maam lol pleaseee pleasee and more want wanna would like need
    por favor porfa porfavor ya todo todos todas los las el la de mi mis me mensajes mensaje
    textos texto gracias lista numero
    """
)

# Common English and Spanish words one letter away from a keyword: never read as a misspelling.
COMMON_WORDS = _wordset(
    """
    step steps stow shop slop atop stoop stomp stoup strop swop scop sop top tops spot stops
    sto qui quo suit sit stopped stopping store stock stoa stole stone stood story soto
    quite quiet quilt quits quip quid quin squit quota quiz quito
    cancer canceled cancels cancelled candle camel
    revoked revokes evoke revote
    end ends and send bend fend lend mend tend vend wend endo
    para paras parad parir pagar parara parer paren pasar parra
    bajo baje bajas bajan bajar caja bala paja faja raja bata maja haja
    cancela cancelan cancelas cancele
    start starts stars stat stay star sort
    also alta altos alti alto auto
    """
)

# Phrases that ask, in plain words, not to be texted. Matched on the normalized words, so
# "Don't text me anymore!!" reads "dont text me anymore".
_MSG = r"""(?:texts?|txts?|text\ messages?|messages?|msgs?|sms|reminders?|notifications?
    |alerts?|promos?|promotions?|marketing|ads|spam|these|them|this)"""
_TEXTING = r"(?:texting|txting|texing|messaging|msging|contacting|sending|spamming|calling)"
OPT_OUT_PHRASES = _pattern(
    rf"\b(?:stop|quit|cease|end)(?:\ \w+){{0,2}}\ {_TEXTING}\b",
    rf"""\b(?:stop|quit|end|cease|no\ more|cancel|unsubscribe|block)
        (?:\ (?:all|the|your|these|those|any|my|me\ from|from))*\ {_MSG}\b""",
    r"\btake\ (?:me|my\ number|this\ number|us)\ (?:off|out)\b",
    r"\bremove\ (?:me|my\ number|this\ number|us|my\ phone)\b",
    r"\bdelete\ (?:me|my\ number|this\ number|my\ phone)\b",
    r"\bunsubscribe\ me\b|\bi\ (?:want|wish|would\ like|need)\ to\ unsubscribe\b",
    r"\bopt\ (?:me\ )?out\b|\bopt\ outta\b",
    r"\b(?:revoke|revoking|withdraw|withdrawing)\ (?:my\ |all\ |any\ )?consent\b",
    r"""\b(?:dont|do\ not|never|pls\ dont|please\ dont|quit|stop)\ (?:ever\ )?
        (?:text|txt|message|msg|contact|sms|send)
        \ (?:me|us|this\ number|here|to\ this\ number)\b""",
    r"""\b(?:dont|do\ not|never)\ (?:ever\ )?(?:text|txt|message|contact)\ (?:me\ )?
        (?:again|anymore|any\ more)\b""",
    r"""\b(?:dont|do\ not|no\ longer)\ (?:want|need|wish\ to\ receive)
        \ (?:(?:any\ more|anymore|any|these|your|the)[ ]
        |to\ (?:get|receive)\ (?:any\ |these\ |your\ )?)?
        (?:texts|messages|msgs|text\ messages)\b""",
    r"\bno\ (?:more|longer\ want)\ (?:texts|messages|msgs|text\ messages|sms)\b",
    r"\bleave\ me\ alone\b|\blose\ my\ number\b",
    rf"\benough\ (?:with\ )?(?:the\ |your\ |these\ |all\ the\ )?{_MSG}\b",
    r"""\b(?:dont|do\ not|never|please\ dont|pls\ dont)\ (?:text|txt|message|msg|contact)
        (?:\ (?:me|us|please|anymore|again|ever))*$""",
    r"\bnot\ interested\ in\ (?:these|your|the)\ (?:texts|messages)\b",
    # Spanish.
    r"\bno\ (?:quiero\ )?(?:mas\ )?(?:mensajes|textos)\b",
    r"\bno\ me\ (?:manden|mande|envien|envies|escriban|escribas|mandes|textee|texteen|contacten)\b",
    r"\bya\ no\ (?:quiero|deseo)\ (?:recibir\ )?(?:mas\ )?(?:mensajes|textos)\b",
    r"\bno\ (?:quiero|deseo)\ recibir\ (?:mas\ )?(?:mensajes|textos)\b",
    r"\bde(?:ja|je|jen|jes)\ de\ (?:enviar|mandar|escribir|textear)\w*\b",
    r"\b(?:borren?me|sacar?me|saquenme|quitenme|eliminenme|borrar?me)\b(?:\ \w+){0,3}\ lista\b",
    r"\b(?:darme|dar|denme|me\ doy)\ de\ baja\b",
    r"\bcancelar\ (?:la\ )?(?:suscripcion|subscripcion|mensajes)\b",
    r"\bdesuscribir(?:me|se)?\b|\bdesinscribir(?:me)?\b",
)
WRONG_NUMBER = _pattern(
    r"\bwrong\ (?:number|num|person|phone|guy|girl|contact)\b|^(?:sorry\ )?wrong$",
    r"\bequivocad[oa]\b|\bnot\ (?:his|her|their)\ (?:number|phone)\b",
    r"\bno\ (?:one|body)\ (?:here\ )?(?:named|by\ that\ name)\b",
)
# "Please don't stop the texts": a keyword negated; a person decides.
NEGATED = _pattern(
    r"\b(?:dont|do\ not|never|didnt|did\ not|not)\ (?:\w+\ )?(?:stop|unsubscribe|cancel|end)\b"
)
# Words that make a request to stop partial or conditional, or about something other than the
# texts ("remove me from the waitlist"), when they follow it: staff decide.
QUALIFIERS = _wordset(
    """
    just only except instead unless membership account billing bills emails email
    class classes times schedule until waitlist wait group chat challenge roster team
    appointment appt booking event program lesson session contest raffle giveaway
    """
)
# Someone taking back an opt-out they sent by mistake: read before the opt-out phrases.
_OPTED = r"(?:stop|stopped|unsubscribe|unsubscribed|opted|optout)"
UNDO_OPT_OUT = _pattern(
    r"\b(?:didnt|did\ not|dont|do\ not)\ (?:mean|want)\ to\ (?:unsubscribe|stop|opt\ out|cancel)\b",
    r"\bundo\b.*\b(?:stop|unsubscribe)\b",
    rf"\b{_OPTED}\b.*\b(?:by\ mistake|accident\w*)",
    rf"\b(?:mistake|accident\w*)\b.*\b{_OPTED}\b",
)
# Someone asking to be texted again, in words other than the keywords.
RESUBSCRIBE = _pattern(
    r"\b(?:text|message|txt|contact)\ (?:me|us)\ again\b",
    r"\b(?:opt|add|put|sign|subscribe)\ (?:me|us)\ back\b|\bopt\ (?:me\ |us\ )?(?:back\ )?in\b",
    r"\bresubscribe\b|\bre\ subscribe\b|\bsubscribe\ (?:me\ )?again\b|\bsubscribe\ me\b",
    r"""\b(?:i\ )?(?:want|would\ like|wanna|need)\ (?:to\ get|to\ receive|to\ start\ getting|your)
        \ (?:the\ |your\ )?(?:texts|messages|reminders)\ (?:again|back)\b""",
    r"\b(?:texts|messages|reminders)\ back\b",
    r"\bresume\ (?:the\ |my\ )?(?:texts|messages|reminders)\b",
    r"\bstart\ (?:texting|sending|messaging)\ me\b",
    r"^(?:please\ )?keep\ (?:texting|sending|messaging)\ me\b",
    r"\bmiss\ (?:your|the)\ (?:texts|messages|reminders)\b",
    r"\b(?:volver\ a|quiero)\ recibir\ (?:los\ )?(?:mensajes|textos)\b|\bsuscribirme\b",
    r"\bvuelvan\ a\ (?:enviar|mandar|escribir)\w*\b|\bmandenme\ (?:mensajes\ )?otra\ vez\b",
)
RESUBSCRIBE_WHOLE = frozenset({"si", "yes please text me", "yeah", "yep", "sure", "ok resume"})
# Look-alikes that use a keyword in its everyday sense: "can you stop by at 5?".
_BOOKED = r"""(?:appointment|appt|class|session|booking|reservation|visit|lesson|training|pt
    |spot|slot|plans?|trip|monday|tuesday|wednesday|thursday|friday|saturday|sunday|today
    |tomorrow|tonight)\w*"""
BENIGN = _pattern(
    r"\bstop\w*\ (?:by|in|at|over|off|sign|light|and|on)\b|\bbus\ stop\b|\bnon\ ?stop\b",
    r"\b(?:dont|do\ not|cant|wont|never|couldnt|didnt|not)\ (?:\w+\ )?stop\b",
    rf"""\bcancel\w*\ (?:(?:my|the|our|his|her|their|this|that|tomorrows|todays|mondays|next|a
        |an|\d+\w*|am|pm|at|for|on)\ )*{_BOOKED}\b""",
    r"\bend\ (?:of|at|up|time|date)\b|\bin\ the\ end\b|\bat\ the\ end\b|\bthe\ end\ of\b",
    rf"""\b(?:could|can|may|should|will|would)\ (?:i|we|you)\ (?:cancel|quit|stop|end)\b
        .*\b{_BOOKED}\b""",
    r"\bquit\ (?:smoking|drinking|my\ job|sugar|caffeine)\b",
)
# Not a request in so many words, but a reasonable person might read one: staff decide.
REVIEW_PHRASES = _pattern(
    r"\bnot\ interested\b|\bwant\ out\b|\bno\ longer\ in\ service\b|\bno\ me\ interesa\b",
    r"""^(?:please\ |pls\ |just\ |oh\ )?(?:go\ away|get\ lost|shut\ up
        |(?:fuck|f|piss|bugger|buzz|back)\ off)(?:\ (?:please|pls|now|already))*$""",
    r"\bwho\ gave\ you\ (?:my|this)\ number\b|\bhow\ did\ you\ get\ (?:my|this)\ number\b",
)
MENTIONS = frozenset({"stop", "cancel", "unsubscribe", "quit", "revoke", "optout", "stopall"})
MENTIONS |= {"parar", "baja", "cancelar", "unsub", "spam", "spamming", "stops", "stopped"}
MENTIONS |= {"stopping", "unsubscribed", "unsubscribing", "cancelled", "canceled", "quitting"}


def words(body):
    """The message as a list of lowercase words without accents, punctuation or emoji."""
    text = unicodedata.normalize("NFKC", body or "").casefold()
    kept = []
    for char in unicodedata.normalize("NFKD", text):
        category = unicodedata.category(char)
        if category[0] in "LN":
            kept.append(char)
        elif category == "Mn" or char in "'’ʼ`´" or category == "Cf":
            continue  # accents, apostrophes and zero-width characters join the word
        else:
            kept.append(" ")  # whitespace of any kind, punctuation, symbols, emoji, controls
    return _join_spelt_out("".join(kept).split())


def _join_spelt_out(tokens):
    """ "S T O P" and "s.t.o.p" are one word: runs of three or more single letters join."""
    joined, run = [], []
    for token in [*tokens, ""]:
        if len(token) == 1 and token.isalpha():
            run.append(token)
            continue
        joined.extend(["".join(run)] if len(run) >= 3 else run)
        run = []
        if token:
            joined.append(token)
    return joined


def normalize(body):
    return " ".join(words(body))


def _damerau_one(a, b):
    """True when b is a one-edit (insert, delete, substitute, swap adjacent) variant of a."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


_FUZZY_TARGETS = sorted(k for k in OPT_OUT_KEYWORDS | SPANISH_OPT_OUT_KEYWORDS if len(k) >= 4)


_STRETCHED = re.compile(r"(\w)\1{2,}")


def correct(word):
    """The opt-out keyword `word` is a slip of, or None (4+ letters, never a real word).

    A letter held down ("Stopppp", "STOOOP") is one letter."""
    if len(word) < 3 or word in ALL_KEYWORDS or word in COMMON_WORDS or word in FILLER:
        return None
    if not word.isalpha():
        return None
    unstretched = _STRETCHED.sub(r"\1", word)
    if unstretched != word:
        if unstretched in OPT_OUT_KEYWORDS | SPANISH_OPT_OUT_KEYWORDS:
            return unstretched
        word = unstretched
    for keyword in _FUZZY_TARGETS:
        if _damerau_one(keyword, word):
            return keyword
    return None


def _join_opt_out(tokens):
    """ "opt out", "opt-out", "stop all" and "no más" as single tokens."""
    joined, i = [], 0
    while i < len(tokens):
        pair = tuple(tokens[i : i + 2])
        if pair in {("opt", "out"), ("opt", "outta")}:
            joined.append("optout")
            i += 2
        elif pair == ("no", "mas"):
            joined.append("nomas")
            i += 2
        elif pair == ("no", "more"):
            joined.append("nomore")
            i += 2
        elif pair == ("un", "subscribe"):
            joined.append("unsubscribe")
            i += 2
        else:
            joined.append(tokens[i])
            i += 1
    return joined


def _only_filler(tokens, keywords):
    return any(t in keywords for t in tokens) and all(t in keywords or t in FILLER for t in tokens)


def classify(body):
    """What an inbound message asks for: a Reply(intent, rule, review_kind)."""
    raw = words(body)
    if not raw:
        return NOTHING
    text = " ".join(raw)
    tokens = _join_opt_out(raw)
    corrected = [correct(t) or t for t in tokens]
    slipped = corrected != tokens
    fixed = " ".join(correct(t) or t for t in raw)  # for phrases: "stpo texting me"

    if text == "alto":
        return Reply(Intent.OPT_OUT, Rule.SPANISH)
    if _only_filler(tokens, HELP_KEYWORDS) and not set(tokens) & OPT_OUT_WORDS:
        return Reply(Intent.HELP, Rule.HELP_KEYWORD)
    if WRONG_NUMBER.search(text):
        return Reply(Intent.OPT_OUT, Rule.WRONG_NUMBER)
    if _only_filler(corrected, OPT_OUT_WORDS):
        return Reply(Intent.OPT_OUT, _keyword_rule(tokens, slipped))
    if _only_filler(_last_sentence(body), OPT_OUT_WORDS):
        return Reply(Intent.OPT_OUT, Rule.KEYWORD_SENTENCE)
    if _only_filler(tokens, OPT_IN_KEYWORDS):
        rule = Rule.START if set(tokens) & START_KEYWORDS else Rule.OPT_IN_KEYWORD
        return Reply(Intent.OPT_IN, rule)
    if UNDO_OPT_OUT.search(text):
        return Reply(Intent.REVIEW, Rule.RESUBSCRIBE_WORDING, ReviewKind.RESUBSCRIBE)
    if NEGATED.search(fixed) and not BENIGN.search(fixed):
        return Reply(Intent.REVIEW, Rule.MENTIONS_STOP, ReviewKind.OPT_OUT)
    if phrase := OPT_OUT_PHRASES.search(fixed):
        # "stop sending me class times, just billing": the condition follows the request.
        if set(fixed[phrase.start() :].split()) & QUALIFIERS:
            return Reply(Intent.REVIEW, Rule.PARTIAL_REQUEST, ReviewKind.OPT_OUT)
        return Reply(Intent.OPT_OUT, Rule.MISSPELLING if slipped else Rule.PHRASE)
    if RESUBSCRIBE.search(text) or text in RESUBSCRIBE_WHOLE:
        return Reply(Intent.REVIEW, Rule.RESUBSCRIBE_WORDING, ReviewKind.RESUBSCRIBE)
    if BENIGN.search(fixed):
        return NOTHING
    if set(corrected) & MENTIONS or REVIEW_PHRASES.search(fixed):
        return Reply(Intent.REVIEW, Rule.MENTIONS_STOP, ReviewKind.OPT_OUT)
    return NOTHING


_SENTENCE_END = re.compile(r"[.!?;,:\n\r\u2028\u2029\u3002\uff01\uff1f\u2026—]+")


def _last_sentence(body):
    """The words of the message's last sentence or clause: "Who is this? Stop." is "stop"."""
    parts = [p for p in _SENTENCE_END.split(unicodedata.normalize("NFKC", body or "")) if words(p)]
    return _join_opt_out(words(parts[-1])) if len(parts) > 1 else []


def _keyword_rule(tokens, slipped):
    if slipped:
        return Rule.MISSPELLING
    if set(tokens) & (SPANISH_OPT_OUT_KEYWORDS | {"nomas"}):
        return Rule.SPANISH
    if len(tokens) == 1:
        return Rule.KEYWORD
    return Rule.KEYWORD_WITH_FILLER


# Twilio's Advanced Opt-Out tells us what it already did in the OptOutType parameter.
OPT_OUT_TYPE = {
    "STOP": Reply(Intent.OPT_OUT, Rule.TWILIO),
    "START": Reply(Intent.OPT_IN, Rule.START),
    "HELP": Reply(Intent.HELP, Rule.TWILIO),
}


def from_opt_out_type(value):
    """What Twilio's Advanced Opt-Out already did, as a Reply, or None."""
    return OPT_OUT_TYPE.get((value or "").strip().upper())
