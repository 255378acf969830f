"""Generate an extractive-QA set (SQuAD v1.1 JSON) from shipped English text with rules, no models.

No QA data ships anywhere this project runs, so questions are made from sentences: a span a simple
pattern can type (money, percentage, count, date, person, place, score, name) becomes the answer and its
sentence becomes a wh-question. Where the grammar is easy to get right the wh-phrase is moved to the
front (subject questions, auxiliary inversion, do-support for past-tense verbs); elsewhere it stays in
place. Light paraphrase (dropped asides and trailing clauses, swapped synonyms) keeps exact sentence
matching from solving every question. Every answer is checked to be an exact span of its paragraph.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pocketbert.data.corpus import Article, load_articles, load_paragraphs, select_articles, sentence_spans, source_version
from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_dir, atomic_write_text, check_replaceable, write_json

GENERATOR_VERSION = "1"
MAX_QUESTIONS_PER_PARAGRAPH = 4
MAX_QUESTIONS_PER_SENTENCE = 2
MIN_QUESTION_WORDS = 6
MAX_QUESTION_WORDS = 40


@dataclass(frozen=True)
class Candidate:
    """An answer span in a sentence and the words the wh-phrase replaces (the span, maybe with a preposition)."""
    kind: str  # the question type reported in data.json
    wh: str
    start: int
    end: int
    hole_start: int
    hole_end: int
    template: str | None = None  # a whole question, for sources whose sentences follow one known shape


# ---- answer finders: each yields Candidates for one sentence -------------------------------------------

_NUM = r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?"
_MONEY = re.compile(rf"[$£€](?:{_NUM})(?:bn|m|k|\s(?:billion|million|trillion|thousand)\b)?"
                    rf"|(?:{_NUM})\s(?:(?:million|billion)\s)?(?:dollars|pounds|euros)\b")
_PERCENT = re.compile(rf"(?<![\w.])(?:{_NUM})(?:%|\sper\s?cent\b)")
_NUMBER_WORDS = ("two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty "
                 "hundreds thousands millions").split()
_COUNT = re.compile(rf"(?<![\w$£€.,-])((?:{_NUM})(?:\s(?:million|billion|thousand|hundred))?"
                    rf"|(?:{'|'.join(_NUMBER_WORDS)}))\s([a-z]{{3,}}s)\b(?!')", re.IGNORECASE)
_NOT_PLURAL_NOUNS = {"was", "has", "is", "does", "this", "his", "its", "us", "yes", "as", "less", "across", "unless",
                     "plus", "thus", "always", "perhaps", "series", "per", "cents", "whereas", "news", "business"}
_YEAR = re.compile(r"\b(in|since|by|until|from|during|before|after)\s((?:19|20)\d\d)\b(?![-/]|\s(?:and|to)\s\d)")
_MONTHS = "January February March April May June July August September October November December"
_MONTH_DATE = re.compile(rf"\b(in|on|by|until|since)\s((?:\d{{1,2}}\s)?(?:{'|'.join(_MONTHS.split())})"
                         rf"(?:\s\d{{1,2}}(?!\d))?(?:,?\s(?:19|20)\d\d)?)\b")
_WEEKDAY = re.compile(r"\b(on)\s(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b")
_NAME = r"(?:Mc|Mac|O')?[A-Z][a-z]+(?:-[A-Z][a-z]+)?"
_TITLE_NAME = re.compile(rf"\b(?:Mr|Mrs|Ms|Dr|Sir|Lord|Lady)\s({_NAME}(?:\s{_NAME}){{0,2}})")
_ROLES = ("chairman|chief executive|boss|manager|coach|minister|secretary|spokesman|spokeswoman|director|analyst|"
          "economist|president|leader|captain|striker|singer|actor|actress|player|founder|editor|author|producer|"
          "winger|midfielder|defender|goalkeeper|champion|star|head|chief|governor|senator|correspondent|"
          "executive|presenter|rapper|designer|drummer|guitarist|skipper|fly-half|centre|prop|lock|flanker")
_ROLE_PHRASE = rf"(?:(?:the\s)?(?:[\w-]+\s){{0,3}}?(?:{_ROLES})\s)?"  # "chairman and chief executive "
_SPEAKER = re.compile(rf",\"?\s(?:said|says|added|explained|warned)\s{_ROLE_PHRASE}({_NAME}(?:\s{_NAME}){{1,2}})\.$"
                      rf"|,\"?\s{_ROLE_PHRASE}({_NAME}(?:\s{_NAME}){{1,2}})\s(?:said|says|added)\.$")
_SUBJECT_NAME = re.compile(rf"^((?:{_NAME}|[A-Z]{{2,}})(?:\s(?:{_NAME}|[A-Z]{{2,}})){{0,2}})"
                           rf"(?=\s(?:said|says|has|had|have|is|was|will|would|could|can|also|added|told|denied|"
                           rf"claimed|insisted|argued|admitted|announced|won|beat|became|joined|made|took|wants|"
                           rf"believes|hopes|plans)\b)")
_SCORE = re.compile(r"\b(?:won|beat|lost|drew|beating|winning|losing|thrashed|edged|victory|defeat|win)\s"
                    r"(?:[A-Z][\w']*(?:\s[A-Z][\w']*)*\s)?(\d{1,2}-\d{1,2})\b(?!-)")
_CALLED = re.compile(r"\b(?:called|named|titled|entitled|dubbed|known as)\s(\"?)([A-Z][\w'&-]*(?:\s[\w'&-]+){0,4}?)\1"
                     r"(?=[,.;)]|\s(?:and|in|by|for|to|at|which|that|as|from|on|was|is|has)\b|$)")
_PLACES = set("""
Afghanistan Africa America Argentina Asia Athens Australia Austria Baghdad Beijing Belfast Belgium Berlin Birmingham
Brazil Britain Brussels Bristol Canada Cardiff Chile China Colombia Croatia Cuba Cyprus Denmark Dublin Edinburgh Egypt
England Europe Finland France Geneva Georgia Germany Ghana Glasgow Greece Holland Hollywood Iceland India Indonesia Iran
Iraq Ireland Israel Italy Japan Jerusalem Kenya Korea Kosovo Leeds Liverpool London Madrid Malaysia Manchester Melbourne
Mexico Milan Moscow Mumbai Netherlands Newcastle Nigeria Norway Pakistan Palestine Paris Poland Portugal Rome Russia
Scotland Seoul Shanghai Singapore Spain Sudan Sweden Switzerland Sydney Taiwan Thailand Tokyo Turkey Uganda Ukraine
Venice Vienna Wales Washington Wembley Westminster Zimbabwe
""".split()) | {"Los Angeles", "New York", "New Zealand", "Northern Ireland", "South Africa", "South Korea",
                "North Korea", "Hong Kong", "Las Vegas", "San Francisco", "Saudi Arabia", "the US", "the UK", "the EU",
                "the United States", "the Middle East", "the Netherlands", "the Caribbean", "Silicon Valley"}
# Only "in"/"at": places after "to"/"from" mostly sit inside noun phrases ("exports to China").
_PLACE = re.compile(r"\b(in|at)\s(" + "|".join(sorted((re.escape(p) for p in _PLACES), key=len, reverse=True))
                    + r")(?![\w'-]|\s[A-Z])")
_WORDNET_PLACE = re.compile(r"^([A-Z][\w' -]+) is an? (?:[\w-]+ ){0,3}?(?:city|town|port|country|state|region|river|"
                            r"island|capital|province|republic|kingdom|lake|mountain|village)\b.*?\b(?:in|of|on)\s"
                            r"((?:the\s)?(?:[a-z]+ern\s)?[A-Z][\w-]*(?:\s[A-Z][\w-]*)*)")
_WORDNET_LIFE = re.compile(r"^([A-Z][\w' .-]+): .*\((?:born in )?((?:1[0-9]|20)\d\d)-((?:1[0-9]|20)\d\d)\)")


def find_candidates(sentence: str, source: str = "bbc") -> list[Candidate]:
    """Every answer span the rules can type in one sentence; quoted speech only yields its speaker."""
    templated = _wordnet_candidates(sentence) if source == "wordnet" else []
    if templated:
        return templated
    found = []
    speaker = _SPEAKER.search(sentence)
    if speaker:
        group = 1 if speaker.group(1) else 2
        found.append(Candidate("speaker", "who", *speaker.span(group), speaker.start(), len(sentence)))
    if '"' in sentence or _FIRST_PERSON.search(sentence):
        return found  # speech: "we" and "our" have no referent the question could name
    for match in _MONEY.finditer(sentence):
        if _AMOUNT_AS_ADJECTIVE.match(sentence, match.end()):
            continue  # an amount used as an adjective ("a £24m striker") makes no question
        found.append(Candidate("money", "how much", *match.span(), *match.span()))
    for match in _PERCENT.finditer(sentence):
        by = sentence[:match.start()].endswith("by ")
        found.append(Candidate("percentage", "by what percentage" if by else "what percentage", *match.span(),
                               match.start() - 3 * by, match.end()))
    for match in _COUNT.finditer(sentence):
        number, noun = match.group(1), match.group(2)
        if noun.lower() in _NOT_PLURAL_NOUNS or re.fullmatch(r"(19|20)\d\d", number):
            continue  # "2005 results" is a year, not a count
        if re.search(r"\b(?:the|its|his|her|their)\s$", sentence[:match.start()]):
            continue  # "the six largest economies" names a group; it does not count one
        found.append(Candidate("count", f"how many {noun}", *match.span(1), *match.span()))
    for match in _YEAR.finditer(sentence):
        prep = match.group(1)
        wh = {"in": "when", "during": "when", "since": "since when", "by": "by when", "until": "until when",
              "from": "from when"}.get(prep, f"{prep} what year")
        found.append(Candidate("year", wh, *match.span(2), *match.span()))
    for pattern in (_MONTH_DATE, _WEEKDAY):
        for match in pattern.finditer(sentence):
            prep = match.group(1)
            wh = "when" if prep in ("in", "on") else f"{prep} when"
            found.append(Candidate("date", wh, *match.span(2), *match.span()))
    for match in _TITLE_NAME.finditer(sentence):
        found.append(Candidate("person", "who", *match.span(1), *match.span()))
    subject = _SUBJECT_NAME.match(sentence)
    if subject and subject.group(1).split()[0] not in _NOT_NAMES:
        role = re.match(rf"(?:{_ROLES})\s(?=[A-Z])", subject.group(1), re.IGNORECASE)  # "Producer Mel Gibson"
        found.append(Candidate("person", "who", subject.start(1) + (role.end() if role else 0), subject.end(1),
                               *subject.span(1)))
    for match in _PLACE.finditer(sentence):
        answer_start = match.start(2) + (4 if match.group(2).startswith("the ") else 0)
        found.append(Candidate("place", "where", answer_start, match.end(2), *match.span()))
    for match in _SCORE.finditer(sentence):
        found.append(Candidate("score", "by what score", *match.span(1), *match.span(1)))
    for match in _CALLED.finditer(sentence):
        found.append(Candidate("name", "what", *match.span(2), *match.span()))
    # Figures in brackets are mostly currency conversions of the figure before them: not worth a question.
    found = [c for c in found if sentence[:c.hole_start].count("(") == sentence[:c.hole_start].count(")")]
    return _without_overlaps(found)


def _wordnet_candidates(sentence: str) -> list[Candidate]:
    """WordNet's rendered entries have one shape ('X is a ...', 'X: ...'), so whole-question templates fit."""
    life = _WORDNET_LIFE.match(sentence)
    if life:
        name = life.group(1)
        return [Candidate("year", "when", *life.span(2), *life.span(2), template=f"in what year was {name} born"),
                Candidate("year", "when", *life.span(3), *life.span(3), template=f"when did {name} die")]
    place = _WORDNET_PLACE.match(sentence)
    if place:
        return [Candidate("place", "where", *place.span(2), *place.span(2), template=f"where is {place.group(1)}")]
    head = re.match(r"^([A-Z][\w' .-]{2,40}?)(?: is (?=an?\s|the\s)|: (?=[a-z(]))", sentence)
    if head:
        definition = sentence[head.end():].partition(". ")[0].rstrip(".")
        ask = "what is" if sentence[head.end(1):head.end()] == " is " else "which term means"
        return [Candidate("definition", "what", *head.span(1), *head.span(1), template=f"{ask} {definition}")]
    return []


def _without_overlaps(candidates: list[Candidate]) -> list[Candidate]:
    """Keep the first of any two candidates whose holes overlap (the finders run most specific first)."""
    kept: list[Candidate] = []
    for cand in candidates:
        if all(cand.hole_end <= k.hole_start or cand.hole_start >= k.hole_end for k in kept):
            kept.append(cand)
    return kept


_AFTER_AMOUNT = ("in of for to from and or on by at with over last this next a an the than into per each while which "
                 "that as more less against between after before since during until").split()
_AMOUNT_AS_ADJECTIVE = re.compile(r"-|\s(?!(?:[a-z]+ly|" + "|".join(_AFTER_AMOUNT) + r")\b)[a-z]")
_FIRST_PERSON = re.compile(r"\b(I|we|We|our|Our|us|my|My|me|you|You|your|Your)\b")
_NOT_NAMES = {"The", "A", "An", "But", "And", "It", "He", "She", "They", "This", "That", "These", "Those", "In", "On",
              "At", "For", "If", "As", "So", "Mr", "Mrs", "Ms", "Dr", "Sir", "Lord", "There", "Its", "His", "Her",
              "Their", "However", "Meanwhile", "Last", "Next", "Many", "Some", "Most", "Both", "All", "One", "Other",
              "Shares", "Sales", "Profits", "Analysts", "Officials", "Experts", "Critics", "Fans", "Police",
              "Ministers"}
_NOT_NAMES |= set(_MONTHS.split()) | {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}


# ---- turning a sentence and a candidate into a question ------------------------------------------------

_OPENERS = re.compile(r"^(?:But|And|However|Meanwhile|Also|So|Yet|Still|Now|Instead|In addition|Indeed|Overall),?\s+")
_AUX = {"is", "was", "are", "were", "has", "have", "had", "will", "would", "can", "could", "should", "may", "might",
        "must"}
_DETERMINERS = {"the", "a", "an", "its", "his", "her", "their", "this", "that", "these", "those", "our", "some", "any"}
_NOT_A_SUBJECT = {"in", "on", "at", "for", "with", "by", "from", "after", "before", "during", "since", "as", "if",
                  "when", "while", "although", "despite", "to", "of", "there", "what", "how", "why"}
# Met before the verb, these mean the subject holds a clause (or a present-tense verb do-support cannot take).
_CLAUSE_WORDS = {"that", "which", "who", "whose", "when", "while", "if", "because", "although", "as", "and", "but",
                 "says", "believes", "thinks", "-", "("}
# Met between the verb and the hole, these mean the hole may sit in another clause, which fronting would break.
_CLAUSE_BREAKS = (_CLAUSE_WORDS - {"that"}) | {"where", "whether"}
_IRREGULAR_PAST = dict(pair.split(":") for pair in """
rose:rise fell:fall lost:lose said:say won:win made:make took:take gave:give sold:sell bought:buy paid:pay
spent:spend grew:grow told:tell left:leave became:become came:come went:go saw:see got:get led:lead beat:beat
met:meet held:hold kept:keep found:find ran:run brought:bring began:begin wrote:write drew:draw thought:think
sent:send built:build won:win chose:choose struck:strike fought:fight stood:stand taught:teach threw:throw
""".split())
_APPROXIMATORS = {"about", "around", "nearly", "almost", "some", "roughly", "approximately", "just", "only"}
_STRANDABLE = {"for", "in", "over", "after", "within", "during", "by"}
# A hole right after these sits inside a noun phrase ("the last ___ years", "a cost of ___"): it cannot move.
_INSIDE_NOUN_PHRASE = {"the", "a", "an", "its", "his", "her", "their", "this", "last", "past", "next", "first", "of"}
_FUNCTION_WORDS = _DETERMINERS | {"it", "he", "she", "they", "we", "one", "many", "most", "all", "both", "each",
                                  "several", "more", "other", "another"}
_SYNONYMS = {"rose": ["increased", "climbed"], "fell": ["dropped", "declined"], "jumped": ["surged"],
             "bought": ["acquired"], "announced": ["revealed"], "firm": ["company"], "company": ["firm"],
             "profits": ["earnings"], "said": ["stated"], "biggest": ["largest"], "largest": ["biggest"],
             "started": ["began"], "began": ["started"],
             "nearly": ["almost"], "almost": ["nearly"], "film": ["movie"], "movie": ["film"],
             "people": ["individuals"], "top": ["leading"], "also": [""], "now": [""], "already": [""],
             "chief executive": ["boss"], "plans": ["intends"], "wants": ["hopes"], "help": ["assist"],
             "however": [""], "shown": ["demonstrated"], "reported": ["disclosed"], "major": ["big"]}
_SYNONYM_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")\b")


class QuestionWriter:
    """Builds questions; knows the corpus vocabulary so it can find base forms and true proper nouns."""

    def __init__(self, lowercase_words: set[str]):
        self.lowercase_words = lowercase_words  # every word the corpus ever writes in lower case

    def write(self, sentence: str, cand: Candidate, rng: random.Random) -> str | None:
        """The question whose answer is the candidate's span, or None when it reads badly, gives the answer away,
        or is too short or long: a rule-made set is only as good as what it refuses."""
        question: str | None
        if cand.template:
            question = self._paraphrase(cand.template, rng)
        elif cand.kind == "speaker":
            question = self._speaker_question(sentence[:cand.hole_start], rng)
        else:
            question = self._wh_question(sentence, cand, rng)
        if not question:
            return None
        question = _upper_first(" ".join(question.replace(" ,", ",").split()).rstrip(",;: ")) + "?"
        answer = sentence[cand.start:cand.end]
        if cand.kind in ("person", "speaker") and answer.lower() in self.lowercase_words:
            return None  # a capitalised common word ("Studies show ..."), not a name
        if answer.lower() in question.lower() or not MIN_QUESTION_WORDS <= len(question.split()) <= MAX_QUESTION_WORDS:
            return None
        return question

    def _wh_question(self, sentence: str, cand: Candidate, rng: random.Random) -> str | None:
        before = _OPENERS.sub("", sentence[:cand.hole_start])
        after = self._paraphrase(sentence[cand.hole_end:].rstrip().rstrip(".!?"), rng, trailing=True)
        if not before.strip():  # the hole opens the sentence
            if not after.startswith(","):
                return f"{cand.wh} {after}"  # a subject: replaced where it stands
            if cand.wh == "who":  # "X, the chief executive of Y, said ..." -> "Who said ...?"
                return f"{cand.wh} {re.sub(r'^,[^,]{3,80},', '', after)}" if after.count(",") >= 2 else None
            rest = after.lstrip(", ")  # an opening adverbial: "In 2003, the firm ..." -> "When did the firm ...?"
            return self._front(cand.wh, rest, "") or f"{rest} {cand.wh}"
        before = self._paraphrase(before, rng)
        fronted = self._front(cand.wh, before, after) if rng.random() < 0.8 else None
        return fronted or f"{before} {cand.wh} {after}"

    def _speaker_question(self, quote: str, rng: random.Random) -> str | None:
        """'"The deal is good," Mr X said.' -> 'Who said "the deal is good"?'; long quotes are cut at a comma."""
        quoted = quote.startswith('"')
        text = quote.strip().strip('"').rstrip(",")
        head, _, _ = text.partition(", ")
        if len(text.split()) > 15 and len(head.split()) >= 6:
            text = head
        text = self._paraphrase(text, rng)
        return f'who said "{text}"' if quoted else f"who said that {self._lower_start(text)}"

    def _front(self, wh: str, before: str, after: str) -> str | None:
        """Move the wh-phrase to the front by inverting an auxiliary or adding do-support; None if unsure."""
        tokens = before.split()
        if tokens and tokens[-1].lower() in _APPROXIMATORS:
            tokens.pop()  # "attracting some ___ visitors" -> "how many visitors ... attracting"
        elif tokens and tokens[-1].lower() in _STRANDABLE and not wh.startswith(tokens[-1].lower()):
            wh = f"{tokens.pop().lower()} {wh}"  # "camped for ___ days" -> "for how many days did ... camp"
        if not tokens or tokens[0].lower() in _NOT_A_SUBJECT or tokens[-1].lower() in _INSIDE_NOUN_PHRASE:
            return None
        for i in range(1, min(len(tokens), 9)):
            word = tokens[i]
            if tokens[i - 1].endswith(",") or word.lower() in _CLAUSE_WORDS:
                return None  # an aside or a clause inside the subject: its verb would be the wrong one
            subject = " ".join([self._lower_first(tokens[0], tokens[1:2])] + tokens[1:i])
            if word.lower() in _AUX:
                aux, verb = word.lower(), ""
            elif (base := self._past_to_base(word)) and tokens[i - 1].lower() not in _DETERMINERS:
                aux, verb = "did", base
            else:
                continue
            between = tokens[i + 1:]
            if tokens[-1].lower() == "that" or any(
                    t.endswith((",", ";")) or t.lower() in _CLAUSE_BREAKS or t.lower() in _AUX or self._past_to_base(t)
                    for t in between):
                return None  # the hole is in another clause, or is the subject of one ("that ___ was")
            return f"{wh} {aux} {subject} {verb} {' '.join(between)} {after}"
        return None

    def _past_to_base(self, word: str) -> str | None:
        if word in _IRREGULAR_PAST:
            return _IRREGULAR_PAST[word]
        if not re.fullmatch(r"[a-z]{3,}ed", word):
            return None
        stem = word[:-2]
        options = [word[:-1], stem]  # raised -> raise, jumped -> jump
        if stem.endswith("i"):
            options.append(stem[:-1] + "y")  # carried -> carry
        if len(stem) > 2 and stem[-1] == stem[-2]:
            options.append(stem[:-1])  # planned -> plan
        return next((o for o in options if o in self.lowercase_words and len(o) > 2), None)

    def _lower_start(self, text: str) -> str:
        first, _, rest = text.partition(" ")
        return f"{self._lower_first(first, rest.split()[:1])} {rest}"

    def _lower_first(self, word: str, following: list[str]) -> str:
        """Lower-case a sentence-initial word unless it is a proper noun (or the start of a multi-word one)."""
        if word.lower() in _FUNCTION_WORDS:
            return word.lower()
        if following and following[0][:1].isupper():
            return word
        if word.lower() in self.lowercase_words:
            return word.lower()
        return word

    @staticmethod
    def _paraphrase(text: str, rng: random.Random, trailing: bool = False) -> str:
        """Drop brackets, an aside or a trailing clause and swap a few words, each only sometimes."""
        if rng.random() < 0.5:
            text = re.sub(r"\s\([^()]*\)", "", text)
        if "(" not in text and rng.random() < 0.5:  # commas inside brackets are not clause boundaries
            text = re.sub(r",\s[^,]{3,80},\s", " ", text, count=1)
        if trailing and "(" not in text and rng.random() < 0.5 and len(text.split()) > 6:
            head, sep, tail = text.rpartition(", ")
            if sep and len(head.split()) >= 2 and len(tail.split()) >= 3:
                text = head
        return _SYNONYM_RE.sub(lambda m: rng.choice(_SYNONYMS[m.group(1)]) if rng.random() < 0.4 else m.group(1),
                               text)


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---- the dataset --------------------------------------------------------------------------------------

_Entry = tuple[int, Candidate, str]  # (sentence start in the paragraph, candidate, question)

def questions_for_article(article: Article, writer: QuestionWriter, seed: int) -> list[dict]:
    """SQuAD paragraphs for one article; the article's own RNG makes it independent of which others are chosen."""
    rng = random.Random(f"{seed}-{article.id}")
    paragraphs = []
    for p_index, context in enumerate(article.paragraphs):
        pool: list[_Entry] = []
        for s_start, s_end in sentence_spans(context):
            sentence = context[s_start:s_end]
            for cand in find_candidates(sentence, article.source):
                question = writer.write(sentence, cand, rng)
                if question:
                    pool.append((s_start, cand, question))
        qas: list[dict] = []
        for s_start, cand, question in _pick(pool, rng):
            text, start = context[s_start + cand.start:s_start + cand.end], s_start + cand.start
            if not text or context[start:start + len(text)] != text or text.lower() in question.lower():
                continue
            qas.append({"id": f"{article.id.replace('/', '-')}-p{p_index}-q{len(qas)}", "question": question,
                        "answers": [{"text": text, "answer_start": start}], "type": cand.kind})
        if qas:
            paragraphs.append({"context": context, "qas": qas})
    return paragraphs


def _pick(pool: list[_Entry], rng: random.Random) -> list[_Entry]:
    """Up to MAX_QUESTIONS_PER_PARAGRAPH, spreading them over question types and sentences, in text order."""
    remaining = list(pool)
    rng.shuffle(remaining)
    chosen: list[_Entry] = []
    per_sentence: Counter[int] = Counter()  # questions per sentence start
    kinds: Counter[str] = Counter()  # questions per type
    while len(chosen) < MAX_QUESTIONS_PER_PARAGRAPH:
        open_ = [e for e in remaining if per_sentence[e[0]] < MAX_QUESTIONS_PER_SENTENCE]
        if not open_:
            break
        entry = min(open_, key=lambda e: kinds[e[1].kind])  # the least-asked type; ties in seeded order
        remaining.remove(entry)
        chosen.append(entry)
        per_sentence[entry[0]] += 1
        kinds[entry[1].kind] += 1
    return sorted(chosen, key=lambda e: (e[0], e[1].start))


def make_qa_dataset(out: str | Path, source: str = "bbc", seed: int = 0, max_articles: int | None = None,
                    dev_fraction: float = 0.1, force: bool = False, progress: bool = True) -> dict:
    """Write OUT/train.json, OUT/dev.json (SQuAD v1.1) and OUT/data.json (the manifest); return the manifest.
    `progress=False`: no progress bar (inside another command's, e.g. an export that generates calibration data)."""
    if not 0 < dev_fraction < 1:
        raise PocketbertError(f"--dev-fraction must be between 0 and 1 (exclusive), got {dev_fraction}")
    check_replaceable(out, force)  # before the articles load; atomic_dir checks again under its lock
    all_articles = load_articles(source)
    articles = select_articles(all_articles, max_articles, seed)
    if len(articles) < 2:
        raise PocketbertError("need at least 2 articles to split train from dev; raise --max-articles")
    n_dev = min(len(articles) - 1, max(1, round(len(articles) * dev_fraction)))
    splits = {"dev": articles[:n_dev], "train": articles[n_dev:]}  # whole articles: none is in both
    writer = QuestionWriter(_lowercase_words(all_articles))

    manifest = {"generator": "pocketbert.data.make_qa", "generator_version": GENERATOR_VERSION,
                "source": source, "source_version": source_version(source), "seed": seed,
                "max_articles": max_articles, "dev_fraction": dev_fraction, "format": "SQuAD v1.1", "splits": {}}
    if source == "bbc":
        manifest["licence"] = "BBC news texts: research use only; do not redistribute or commit this folder"
    with atomic_dir(out, force=force) as tmp:
        for split in ("train", "dev"):
            data: list[dict] = []
            kinds: Counter[str] = Counter()
            ordered = sorted(splits[split], key=lambda a: a.id)
            for article in tqdm(ordered, desc=f"make-qa {split}", unit="article", disable=not progress):
                paragraphs = questions_for_article(article, writer, seed)
                for paragraph in paragraphs:
                    for qa in paragraph["qas"]:
                        kinds[qa.pop("type")] += 1
                if paragraphs:
                    data.append({"title": article.title, "paragraphs": paragraphs})
            write_json(tmp / f"{split}.json", {"version": "1.1", "data": data})
            manifest["splits"][split] = {
                "articles": len(data), "paragraphs": sum(len(a["paragraphs"]) for a in data),
                "questions": sum(kinds.values()), "question_types": dict(sorted(kinds.items())),
            }
        if not manifest["splits"]["dev"]["questions"] or not manifest["splits"]["train"]["questions"]:
            raise PocketbertError("too few articles gave questions for both splits; raise --max-articles")
        write_json(tmp / "data.json", manifest)
    return manifest


def _lowercase_words(articles: list[Article]) -> set[str]:
    return {w for a in articles for p in a.paragraphs for w in re.findall(r"\b[a-z][a-z-]*\b", p)}


def write_text_corpus(out: str | Path, source: str = "bbc", max_articles: int | None = None, seed: int = 0,
                      force: bool = False) -> int:
    """Write one paragraph per line (the masked-LM distillation text); return how many were written."""
    out = Path(out)
    if out.is_dir():  # --force would not help: the text goes into one file, never over a folder
        raise PocketbertError(f"output '{out}' is a folder; `data text` writes one text file: pass a file path, "
                              f"e.g. --out {out / 'text.txt'}")
    if out.exists() and not force:
        raise PocketbertError(f"output '{out}' already exists; pass --force to overwrite it")
    paragraphs = load_paragraphs(source, max_articles, seed)
    atomic_write_text(out, "".join(p + "\n" for p in paragraphs))
    return len(paragraphs)
