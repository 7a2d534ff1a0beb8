"""Tokenize once, sort by length, cut token-budget batches, pad each batch to its own length, restore order.

Every backend (torch, onnxruntime, TensorRT) scores pairs through this module, so padding and truncation
behave identically everywhere. It needs only ``tokenizers`` and numpy.
"""

from __future__ import annotations

import contextlib
import copy
import json
import numbers
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrank.documents import Document, check_document, document_parts, document_text, pair_separator

Pair = tuple[str, Document]


def is_single_pair(pairs: Any) -> bool:
    """Whether ``pairs`` is one ``("query", document)`` pair given alone, which ``predict`` scores as a scalar (as
    sentence-transformers does), rather than a list of pairs; a 1-D NumPy array of two strings is one too."""
    if isinstance(pairs, np.ndarray) and pairs.ndim == 1 and pairs.shape == (2,) and pairs.dtype.kind in "UO":
        pairs = pairs.tolist()
    return (isinstance(pairs, (tuple, list)) and len(pairs) == 2 and isinstance(pairs[0], str)
            and isinstance(pairs[1], (str, Mapping)))


def check_pairs(pairs: Sequence[Sequence[Any]]) -> list[Pair]:
    """Validate (query, document) pairs (a document is a string or ``{"text", "title"}``, see
    ``fastrank.documents``; a 2-column NumPy array of strings is read row by row); a bad item raises TypeError
    naming its position and what is accepted."""
    if isinstance(pairs, np.ndarray) and pairs.ndim == 2 and pairs.shape[1] == 2:
        pairs = pairs.tolist()  # a DataFrame's two columns, df[["query", "document"]].values
    accepted = "pairs must be a list of (query, document) tuples"
    if pairs is None or isinstance(pairs, (str, bytes, Mapping)):
        raise TypeError(f"{accepted}, got {'None' if pairs is None else 'a single ' + type(pairs).__name__}")
    if hasattr(pairs, "columns") and hasattr(pairs, "to_dict"):  # a DataFrame iterates its column names
        raise TypeError(f"{accepted}, got a {type(pairs).__name__}, which iterates over its column names: pass "
                        "df[['query', 'document']].values")
    out: list[Pair] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pair {i} must be a (query, document) tuple of two strings, got {type(pair).__name__}")
        q, d = pair
        if not isinstance(q, str):
            raise TypeError(f"pair {i} must hold a query string, got ({type(q).__name__}, {type(d).__name__})")
        check_document(d, f"pair {i}'s document")
        out.append((q, d))
    return out


def distinct_pairs(pairs: Sequence[Pair]) -> tuple[list[Pair], np.ndarray]:
    """``(distinct pairs in first-seen order, index)`` with ``pairs[i]`` equal to ``distinct[index[i]]``: a pair is
    its query, title and text as given (a blank title is no title). Scoring each once makes repeated documents tie
    exactly and cost nothing (``CrossEncoder.predict``, ``Reranker.logits``, the HTTP service)."""
    seen: dict[tuple[str, str, str], int] = {}
    distinct: list[Pair] = []
    index = np.empty(len(pairs), dtype=np.int64)
    for i, (query, doc) in enumerate(pairs):
        key = (query, *document_parts(doc))
        if key not in seen:
            seen[key] = len(distinct)
            distinct.append((query, doc))
        index[i] = seen[key]
    return distinct, index


@dataclass(eq=False)
class EncodedPairs:
    """Token ids of every pair, unpadded, plus their lengths (the sort key for batching). Compared by identity:
    field-by-field equality would compare NumPy arrays, whose truth value is ambiguous."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @classmethod
    def concat(cls, parts: Sequence[EncodedPairs]) -> EncodedPairs:
        """One EncodedPairs holding ``parts``' pairs in order."""
        if len(parts) == 1:
            return parts[0]
        return cls([x for p in parts for x in p.input_ids], [x for p in parts for x in p.token_type_ids],
                   np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, dtype=np.int64))

    def take(self, indices: np.ndarray) -> EncodedPairs:
        """The pairs at ``indices``, in that order (the whole object when that is all of them, in order)."""
        if len(indices) == len(self) and np.array_equal(indices, np.arange(len(self))):
            return self
        return EncodedPairs([self.input_ids[i] for i in indices], [self.token_type_ids[i] for i in indices],
                            self.lengths[indices])


# Pairs are tokenized a slice at a time and each slice kept as id arrays only: a tokenizers ``Encoding`` costs ~7 KB
# for a short pair (offsets, tokens, overflow), so tokenizing 400k pairs at once held 3 GB where the arrays need
# 0.35 GB. A slice ends at CHUNK_PAIRS items or CHUNK_CHARS characters of text (long documents).
CHUNK_PAIRS = 4096
CHUNK_CHARS = 1_000_000


def _slices(sizes: Sequence[int]) -> list[slice]:
    """Consecutive slices of items of ``sizes`` characters, each within CHUNK_PAIRS items and CHUNK_CHARS characters
    (an item longer than that is a slice of its own)."""
    out, start, chars = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= CHUNK_PAIRS or chars + size > CHUNK_CHARS):
            out.append(slice(start, i))
            start, chars = i, 0
        chars += size
    if start < len(sizes) or not out:
        out.append(slice(start, len(sizes)))
    return out


class PairEncoder:
    """Wraps a fast ``tokenizers.Tokenizer`` configured for pair truncation at ``max_length`` without padding.

    ``query_prefix`` (a model's prompt, e.g. ``"query: "``) opens every pair's query, as sentence-transformers
    prepends a cross-encoder's prompt to the first text of each pair; single texts are encoded as given.
    ``truncation_side`` is the Hugging Face tokenizer's (its ``tokenizer_config.json``): ``"left"`` keeps the last
    tokens of a text that is too long, as transformers and sentence-transformers then do."""

    def __init__(self, tokenizer, max_length: int, pad_token_id: int = 0, query_prefix: str = "",
                 truncation_side: str = "right") -> None:
        from tokenizers import Tokenizer

        if truncation_side not in ("right", "left"):
            raise ValueError(f"truncation_side must be 'right' or 'left' (the tokenizer's), got {truncation_side!r}")
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, strategy="longest_first", direction=truncation_side)
        self.truncation_side = truncation_side
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.query_prefix = check_prompt(query_prefix, "query_prefix")
        self._lazy: dict[str, Any] = {}  # read once from the tokenizer, shared with ``with_query_prefix`` copies

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, max_length: int) -> PairEncoder:
        """The encoder of a Hugging Face (fast) tokenizer: its backend, pad id and truncation side."""
        return cls(tokenizer.backend_tokenizer, max_length, tokenizer.pad_token_id or 0,
                   truncation_side=getattr(tokenizer, "truncation_side", "right"))

    def with_query_prefix(self, prefix: str | None) -> PairEncoder:
        """This encoder with another query prefix (None: none); it shares the tokenizer, so it costs nothing."""
        prefix = check_prompt(prefix or "", "query_prefix")
        if prefix == self.query_prefix:
            return self
        other = copy.copy(self)
        other.query_prefix = prefix
        return other

    @property
    def separator(self) -> str:
        """What this tokenizer puts between query and document, as text: it joins a document's title to its text."""
        sep = self._lazy.get("_separator")
        if sep is None:
            sep = self._lazy["_separator"] = pair_separator(self.tokenizer)
        return sep

    def encode(self, pairs: Sequence[Pair] | Sequence[str]) -> EncodedPairs:
        """Token ids of (query, document) pairs (titled documents joined by ``separator``), or of single texts.

        A text far longer than ``max_length`` tokens is tokenized from a prefix that gives the same ids
        (``_prefixes``): where truncation keeps the first tokens only: 100,000 characters took ~25 ms to keep 512."""
        sep, prefix = self.separator, self.query_prefix
        items = [p if isinstance(p, str) or (isinstance(p[1], str) and not prefix) else
                 (_prefixed(prefix, p[0]), p[1] if isinstance(p[1], str) else document_text(p[1], sep))
                 for p in pairs]
        items = self._prefixes(items)
        parts = []
        for part in _slices([_text_size(item) for item in items]):
            try:
                parts.append(_to_encoded(self.tokenizer.encode_batch(items[part])))
            except TypeError as exc:  # tokenizers says only "TextInputSequence must be str"; say which and why
                raise explain_bad_text(pairs) or exc from exc
        return EncodedPairs.concat(parts)

    def _prefixes(self, items: list) -> list:
        """``items`` with each long text (a pair's document, or a single text) replaced by a prefix whose truncated
        ids are the whole text's: the prefix ends at a word followed by a space, where this tokenizer's
        pre-tokenizer splits (``splits_at_spaces``), so every token before it is the whole text's, and it holds
        ``PREFIX_MARGIN`` tokens more than truncation keeps (and more than the query: longest-first truncation
        compares the two), counted, not guessed. A prefix found too short grows to what the tokens counted in it
        promise; a text with no such prefix, or one under ``PREFIX_MIN_RATIO`` times the prefix, is tokenized
        whole, as is every text where truncation keeps the last tokens (``truncation_side="left"``)."""
        if self.truncation_side != "right":
            return items
        room_pair, room_single = self.room(pair=True), self.room(pair=False)
        first = max(room_pair, room_single) * PREFIX_CHARS_PER_TOKEN
        dense = max(room_pair, room_single) * IDEOGRAPH_CHARS_PER_TOKEN  # the first prefix of Chinese text

        def text(item):  # the text truncation cuts: a single text, or a pair's document (None when not all text)
            if isinstance(item, str):
                return item
            is_pair = isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item)
            return item[1] if is_pair else None

        long = {i: first for i, item in enumerate(items)
                if len(text(item) or "") > min(first, dense) * PREFIX_MIN_RATIO and _is_unicode(text(item))}
        if not long:
            return items
        if "_splits_at_spaces" not in self._lazy:  # read once: the tokenizer's JSON holds its whole vocabulary
            self._lazy["_splits_at_spaces"] = splits_at_spaces(self.tokenizer)
            self._lazy["_ideographs"] = self._lazy["_splits_at_spaces"] and splits_at_ideographs(self.tokenizer)
        if not self._lazy["_splits_at_spaces"]:
            return items
        ideographs = self._lazy["_ideographs"]
        if ideographs:  # about a token a character: a Chinese text's first prefix is shorter
            long = {i: dense if mostly_ideographs(text(items[i])) else first for i in long}
        long = {i: chars for i, chars in long.items() if len(text(items[i])) > chars * PREFIX_MIN_RATIO}
        if not long:
            return items
        items, plain, query_tokens, tried = list(items), self._plain_tokenizer(), {}, {}
        while long:
            cuts = {i: _prefix_at_space(text(items[i]), chars, ideographs) for i, chars in long.items()}
            cuts = {i: cut for i, cut in cuts.items() if cut is not None and len(cut) > tried.get(i, 0)}
            tried.update((i, len(cut)) for i, cut in cuts.items())  # a prefix that did not grow: the text goes whole
            queries = list({items[i][0] for i in cuts if not isinstance(items[i], str)} - query_tokens.keys())
            try:
                counts = [len(e.ids) for e in plain.encode_batch(list(cuts.values()), add_special_tokens=False)]
                query_tokens.update(zip(queries, (len(e.ids) for e in plain.encode_batch(
                    queries, add_special_tokens=False))))
            except TypeError:  # a query that is not valid Unicode (a lone surrogate): ``encode`` names it
                return items
            long = {}
            for (i, cut), n in zip(cuts.items(), counts):
                item = items[i]
                need = room_single + PREFIX_MARGIN if isinstance(item, str) else \
                    max(room_pair + PREFIX_MARGIN, query_tokens[item[0]] + 1)
                if n >= need:
                    items[i] = cut if isinstance(item, str) else (item[0], cut)
                    continue
                grown = int(len(cut) * need / max(n, 1) * 1.25) + 1  # from the density just counted
                if grown * PREFIX_MIN_RATIO < len(text(item)):  # else tokenizing the whole text costs about as much
                    long[i] = grown
        return items

    def encode_windows(self, pairs: Sequence[Pair], overlap: int) -> tuple[EncodedPairs, np.ndarray]:
        """Cut every document into overlapping token windows, each paired with the (same) query.

        Returns the encoded windows and ``owners`` (window -> index of its pair). Consecutive windows of a document
        share ``overlap`` tokens (the ``stride`` of Hugging Face tokenizers). A pair that fits gives one window
        identical to ``encode``'s output, its query whole (for WordPiece tokenizers; BPE ones may split a titled
        document's first word differently). A document that fits one window beside half the room is one window
        too, the query cut to what the document leaves (``encode``'s pair where the document holds at most half the
        room; above that ``encode`` would cut the document as well). A titled document's title opens every window
        (at most half of its document tokens). For a document that needs several windows, a query longer than half
        of ``max_length`` is cut to that half so every window keeps room for document tokens.
        Needs ``0 <= overlap < max_window_overlap``; where the query (or a title) leaves fewer document tokens, the
        overlap is capped at three quarters of them, so windows keep moving on.
        """
        limit = self.max_window_overlap
        if not is_integer(overlap) or not 0 <= overlap < limit:
            raise ValueError(
                f"window overlap must be an integer in [0, {limit}) tokens for max_length={self.max_length} "
                f"(a query may take half of the window), got {overlap!r}"
            )
        overlap = int(overlap)
        from tokenizers import Encoding

        items = [(_prefixed(self.query_prefix, q), document_parts(d)) for q, d in pairs]
        texts = [(q, text) for q, (_, text) in items]
        plain = self._plain_tokenizer()
        room = self.room()
        cut: dict[str, Encoding] = {}  # each query cut to half the room, made for the first document needing it
        parts, owners = [], []
        for part in _slices([_text_size(text) for text in texts]):  # a slice at a time, kept as arrays only
            windows = self._windows(items, texts, part, plain, room, overlap, cut, owners)
            parts.append(_to_encoded(windows))
        return EncodedPairs.concat(parts), np.asarray(owners, dtype=np.int64)

    def _windows(self, items, texts, part: slice, plain, room: int, overlap: int, cut: dict, owners: list) -> list:
        """``encode_windows``' windows (``Encoding`` objects) for the pairs in ``part``; their owners are appended
        to ``owners``."""
        from tokenizers import Encoding

        queries = list(dict.fromkeys(q for q, _ in items[part]))
        titled = {i: f"{items[i][1][0]} {self.separator}" for i in range(part.start, part.stop) if items[i][1][0]}
        try:
            q_encs = dict(zip(queries, plain.encode_batch(queries, add_special_tokens=False)))
            d_encs = plain.encode_batch([text for _, text in texts[part]], add_special_tokens=False)
            t_encs = dict(zip(titled, plain.encode_batch(list(titled.values()), add_special_tokens=False)))
        except TypeError as exc:
            named = [(q, {"title": title, "text": text} if title else text) for q, (title, text) in items]
            raise explain_bad_text(named) or exc from exc
        windows = []
        for i, doc in zip(range(part.start, part.stop), d_encs):
            query = items[i][0]
            title = t_encs.get(i)
            whole = q_encs[query]
            text_tokens = (len(title.ids) if title is not None else 0) + len(doc.ids)
            if len(whole.ids) + text_tokens <= room or text_tokens <= room - room // 2:
                # one window, as ``encode`` gives it: the pair fits, or the document fits beside a long query cut to
                # what it leaves (at least half the room); only a document that needs several windows cuts a long
                # query to half, to leave each window room
                q_enc = whole
                if len(whole.ids) + text_tokens > room:
                    q_enc = cut.get((query, text_tokens))
                    if q_enc is None:
                        q_enc = cut[query, text_tokens] = plain.encode(query, add_special_tokens=False)
                        q_enc.truncate(room - text_tokens, direction=self.truncation_side)  # as ``encode`` cuts
                titled_doc = doc if title is None else Encoding.merge([title, doc], growing_offsets=True)
                windows.append(plain.post_process(q_enc, titled_doc, add_special_tokens=True))
                owners.append(i)
                continue
            q_enc = cut.get(query)
            if q_enc is None:
                q_enc = cut[query] = plain.encode(query, add_special_tokens=False)
                q_enc.truncate(room // 2, direction=self.truncation_side)
            doc_room = room - len(q_enc.ids)
            if title is not None:  # every window starts with the title: it says what each part is about
                if len(title.ids) > doc_room // 2:  # cut the title's words, never the separator after them
                    title = self._short_title(items[i][1][0], doc_room // 2)
                doc_room -= len(title.ids)
            # a long query leaves fewer document tokens per window: keep each window moving on by at least a
            # quarter of them, or an overlap near the limit would step one token at a time (2,088 windows for
            # one 2.2k-token document)
            doc.truncate(doc_room, stride=min(overlap, doc_room - max(1, doc_room // 4)))  # windows: doc.overflowing
            for piece in [doc, *doc.overflowing]:
                if title is not None:
                    piece = Encoding.merge([title, piece], growing_offsets=True)
                windows.append(plain.post_process(q_enc, piece, add_special_tokens=True))
                owners.append(i)
        return windows

    def _short_title(self, title: str, room: int):
        """``title`` and the separator in at most ``room`` tokens: the title cut to what the separator leaves."""
        from tokenizers import Encoding

        plain = self._plain_tokenizer()
        sep = plain.encode(self.separator, add_special_tokens=False)
        words = plain.encode(title, add_special_tokens=False)
        words.truncate(max(0, room - len(sep.ids)))
        return Encoding.merge([words, sep], growing_offsets=True)

    def room(self, pair: bool = True) -> int:
        """Tokens ``max_length`` leaves for text once the special tokens of a pair (or of a single text) are in."""
        return self.max_length - self.tokenizer.num_special_tokens_to_add(pair)

    @property
    def max_window_overlap(self) -> int:
        """Exclusive upper bound on ``encode_windows``' overlap: the fewest document tokens a window can hold."""
        room = self.room()
        return room - room // 2

    def _plain_tokenizer(self):
        plain = self._lazy.get("_plain")
        if plain is None:
            from tokenizers import Tokenizer

            plain = Tokenizer.from_str(self.tokenizer.to_str())
            plain.no_padding()
            plain.no_truncation()
            self._lazy["_plain"] = plain
        return plain


# ``PairEncoder._prefixes``: a text longer than this many characters per token of room is first tokenized from a
# prefix of that length (English runs ~4-5 characters a token), which must hold PREFIX_MARGIN tokens more than
# truncation keeps.
PREFIX_CHARS_PER_TOKEN = 12
PREFIX_MARGIN = 16
# A prefix is tokenized only where the text is this many times longer: the prefix is tokenized twice (to count its
# tokens, then to encode it), so a text under ~2x its length was tokenized faster whole (1.9x slower at 6,200
# characters for max_length 512).
PREFIX_MIN_RATIO = 2.5

# Pre-tokenizers that always end a piece at a space (and start none across it): a prefix cut before a space
# pre-tokenizes into the whole text's first pieces. Others (none, Split on a pattern, ...) get no prefixes.
_SPLIT_AT_SPACES = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "ByteLevel", "Metaspace"}


def splits_at_spaces(tokenizer: Any) -> bool:
    """Whether a ``tokenizers.Tokenizer`` ends every token before a space, so that a prefix cut before one tokenizes
    into the whole text's first tokens. Checked on its JSON:

    - its pre-tokenizer splits at spaces (ByteLevel only with its regex, Metaspace only when it splits); in a
      Sequence the first member that touches spaces must split there (pre-tokenizers only split pieces further,
      but a Metaspace that does not split, or a ByteLevel without its regex, turns spaces into other characters);
    - no normalizer replaces a space (but runs of spaces by one, as XLM-R's does), which would leave none to split;
    - no added token holds a space: the whole text could read it as one token across the cut.
    """
    config = json.loads(tokenizer.to_str())
    if any(" " in token.get("content", "").strip() for token in config.get("added_tokens") or ()):
        return False
    normalizer = config.get("normalizer") or {}
    for n in normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]:
        pattern = (n or {}).get("pattern") or {}
        if n and n.get("type") == "Replace" and (" " in pattern.get("String", "") or (
                "Regex" in pattern and (pattern["Regex"], n.get("content")) != (" {2,}", " "))):
            return False
    pre = config.get("pre_tokenizer") or {}
    for m in pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]:
        if m.get("type") in ("ByteLevel", "Metaspace"):
            return m.get("use_regex", True) is not False and m.get("split", True) is not False
        if m.get("type") in _SPLIT_AT_SPACES:
            return True
    return False


def lone_surrogate(text: str) -> str | None:
    """What makes ``text`` invalid Unicode, as error messages name it ("lone surrogate '\\udce9' at character 3"),
    or None when it is valid: what the tokenizer refuses, found here to name the text that holds it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"lone surrogate {text[exc.start]!r} at character {exc.start}"
    return None


def _is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate): one that is not is tokenized whole, so that the
    tokenizer refuses it even where the bad character lies past the prefix truncation keeps."""
    return lone_surrogate(text) is None


def _prefix_at_space(text: str, chars: int, ideographs: bool = False) -> str | None:
    """``text`` cut before its last space within the first ``chars`` characters that follows a character other than
    whitespace (None when there is none): the prefix ends a word, and a space, where every such pre-tokenizer splits,
    follows it. With ``ideographs`` (``splits_at_ideographs``), also after a CJK ideograph among the last
    ``IDEOGRAPH_LOOKBACK`` characters, whichever cut is later: Chinese text has no spaces, and was tokenized whole."""
    at = text.rfind(" ", 0, chars)
    while at > 0 and text[at - 1].isspace():
        at = text.rfind(" ", 0, at)
    if ideographs:
        end = min(chars, len(text))
        after = next((i for i in range(end, max(end - IDEOGRAPH_LOOKBACK, at, 0), -1) if _is_ideograph(text[i - 1])),
                     0)
        at = max(at, after)
    return text[:at] if at > 0 else None


# What the tokenizers library's BertNormalizer (``handle_chinese_chars``) puts spaces around, its own table: the CJK
# Unified Ideographs blocks and their extensions and compatibility blocks (not kana or Hangul, which stay inside
# their words; U+2B820-2B91F neither, unlike transformers' Python BasicTokenizer).
_IDEOGRAPHS = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
IDEOGRAPH_LOOKBACK = 64  # characters searched back for an ideograph to cut after (Chinese text holds one nearly each)


IDEOGRAPH_CHARS_PER_TOKEN = 2  # ``PREFIX_CHARS_PER_TOKEN`` for text that is mostly ideographs (~1 token each)


def mostly_ideographs(text: str, sample: int = 256) -> bool:
    """Whether most of the first ``sample`` characters of ``text`` are CJK ideographs."""
    head = text[:sample]
    return sum(map(_is_ideograph, head)) * 2 > len(head)


def _is_ideograph(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _IDEOGRAPHS)


def splits_at_ideographs(tokenizer: Any) -> bool:
    """Whether a prefix of a tokenizer that splits at spaces (``splits_at_spaces``, checked first by the caller) may
    also end after a CJK ideograph: its BERT normalizer puts spaces around every ideograph (``handle_chinese_chars``),
    so each is a word of its own, and no added token holds one (it could be read across the cut)."""
    config = json.loads(tokenizer.to_str())
    if any(_is_ideograph(c) for token in config.get("added_tokens") or () for c in token.get("content", "")):
        return False
    normalizer = config.get("normalizer") or {}
    members = normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]
    return any((n or {}).get("type") == "BertNormalizer" and (n or {}).get("handle_chinese_chars", True)
               for n in members)


def check_prompt(prompt: Any, name: str = "prompt") -> str:
    """A prompt (text put before each query) as a str; anything else is a TypeError naming ``name``."""
    if not isinstance(prompt, str):
        raise TypeError(f"{name} must be a string (the text put before each query, e.g. 'query: '), got "
                        f"{type(prompt).__name__} {prompt!r}")
    return prompt


def _prefixed(prefix: str, query: Any) -> Any:
    """``prefix + query`` for a text query; anything else as given, for ``explain_bad_text`` to name."""
    return prefix + query if prefix and isinstance(query, str) else query


def _text_size(item: Any) -> int:
    """Characters in a text or a (query, document) pair of texts (0 for what is not text: the tokenizer names it)."""
    if isinstance(item, str):
        return len(item)
    return sum(len(x) for x in item if isinstance(x, str)) if isinstance(item, (tuple, list)) else 0


def _to_encoded(encs) -> EncodedPairs:
    ids = [np.asarray(e.ids, dtype=np.int64) for e in encs]
    types = [np.asarray(e.type_ids, dtype=np.int64) for e in encs]
    return EncodedPairs(ids, types, np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)))


@contextlib.contextmanager
def bad_text_named_in(given: Sequence) -> Iterator[None]:
    """Around scoring ``distinct_pairs(given)``: a TypeError for a bad text is raised again naming it by its position
    among the pairs the caller ``given`` (``explain_bad_text``), not among the distinct ones scored."""
    try:
        yield
    except TypeError as exc:
        better = explain_bad_text(given)
        if better is None:
            raise
        raise better from exc


def explain_bad_text(items: Sequence) -> TypeError | None:
    """A TypeError naming the first item the tokenizer cannot read (non-str, or str that is not valid Unicode): a
    text, or a pair's query, document, or titled document's title or text, as the caller gave them (positions are
    counted in that field, not in the title and text joined); None when every item reads. A caller that scores
    ``distinct_pairs`` asks again with the pairs it was given, so the item number is the caller's."""
    for i, item in enumerate(items):
        if isinstance(item, (str, bytes)):
            parts = [("text", item)]
        else:
            query, doc = item
            fields = ([("document title", doc.get("title") or ""), ("document text", doc.get("text"))]
                      if isinstance(doc, Mapping) else [("document", doc)])
            parts = [("query", query), *fields]
        for role, text in parts:
            if not isinstance(text, str):
                return TypeError(f"item {i}: {role} must be a str, got {type(text).__name__}")
            bad = lone_surrogate(text)
            if bad is not None:
                return TypeError(f"item {i}: {role} is not valid Unicode text ({bad}, typically bytes decoded with "
                                 f"errors='surrogateescape'); decode the bytes with errors='replace' or fix the text")
    return None


def is_integer(value: Any) -> bool:
    """An int or a NumPy integer, not a bool: what fastrank's integer settings accept."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value: Any, name: str, *, optional: bool = False) -> int | None:
    """``value`` as a Python int when it is a positive integer (an int or a NumPy integer; never a bool), or None when
    ``optional`` and ``value`` is None; anything else raises ValueError naming ``name`` and what is accepted."""
    if optional and value is None:
        return None
    if not is_integer(value) or value < 1:
        accepted = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{name} must be {accepted} (an int or NumPy integer, not a bool), got {value!r}")
    return int(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int when it is a random seed NumPy takes (an integer from 0 to 2**32 - 1; Python's random
    would read -1 as 1), else ValueError naming ``name``."""
    if not is_integer(value) or not 0 <= value < 2**32:
        raise ValueError(f"{name}={value!r} is not an integer from 0 to 2**32 - 1 (NumPy's range)")
    return int(value)


def round_up(n: int | np.ndarray, multiple: int) -> int | np.ndarray:
    """``n`` (an int, or an integer array elementwise) rounded up to a multiple of ``multiple``."""
    return n if multiple <= 1 else -(-n // multiple) * multiple


def plan_batches(
    lengths: np.ndarray,
    batch_size: int = 32,
    max_tokens: int | None = None,
    pad_to_multiple_of: int = 8,
    min_batches: int = 1,
) -> list[np.ndarray]:
    """Group indices by length into batches of at most ``batch_size`` pairs and ``max_tokens`` padded tokens.

    Longest first, so a too-large batch fails at the start rather than at the end. A stable sort keeps equal
    lengths in input order, which makes results reproducible. ``min_batches``: cut smaller batches when there are
    few pairs, so that many workers all get one (10 pairs for 2 workers: 5 + 5, not 10 + 0).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if min_batches > 1:
        batch_size = max(1, min(batch_size, -(-len(lengths) // min_batches)))
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        longest = round_up(int(lengths[order[start]]), pad_to_multiple_of)
        size = batch_size
        if max_tokens is not None:
            size = max(1, min(batch_size, max_tokens // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


# The arrays ``collate`` builds, in the order models and ONNX graphs take them.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_input_names(tokenizer: Any) -> tuple[str, ...]:
    """The ``collate`` arrays a model is fed: those its tokenizer's ``model_input_names`` lists, as
    sentence-transformers and transformers feed them (a tokenizer may emit type ids its model never reads).
    Every path (training, ``predict``, the torch backends, export) selects its inputs here."""
    names = set(getattr(tokenizer, "model_input_names", None) or MODEL_INPUTS)
    return tuple(n for n in MODEL_INPUTS if n in names)


def collate(
    encoded: EncodedPairs, indices: np.ndarray, pad_token_id: int = 0, pad_to_multiple_of: int = 8
) -> dict[str, np.ndarray]:
    """Pad the selected pairs to their own longest length (rounded up) as int64 arrays."""
    width = round_up(int(max(encoded.lengths[i] for i in indices)), pad_to_multiple_of)
    n = len(indices)
    input_ids = np.full((n, width), pad_token_id, dtype=np.int64)
    token_type_ids = np.zeros((n, width), dtype=np.int64)
    attention_mask = np.zeros((n, width), dtype=np.int64)
    for row, i in enumerate(indices):
        length = int(encoded.lengths[i])
        input_ids[row, :length] = encoded.input_ids[i]
        token_type_ids[row, :length] = encoded.token_type_ids[i]
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def run_batches(
    encoded: EncodedPairs,
    fn: Callable[[dict[str, np.ndarray]], np.ndarray] | Sequence[Callable[[dict[str, np.ndarray]], np.ndarray]],
    batch_size: int = 32,
    max_tokens: int | None = None,
    pad_token_id: int = 0,
    width: int = 1,
    on_batch: Callable[[int], object] | None = None,
    pad_to_multiple_of: int = 8,
) -> np.ndarray:
    """Run ``fn(batch) -> (b, width) array`` over length-sorted, padded batches; rows come back in input order.

    This is the scoring loop every backend runs under (the reranker, export verification, ``CrossEncoder.predict``
    and ``EmbeddingModel.encode`` alike); ``on_batch(rows)`` is called after each batch (progress bars).

    ``fn`` may be a list of callables that can run at the same time (e.g. one onnxruntime session each, see
    ``Backend.scorers``): each gets a thread that takes the next batch, longest first, until none is left. The
    first error stops the others and is raised here.
    """
    fns = list(fn) if isinstance(fn, Sequence) else [fn]
    if not fns:
        raise ValueError("run_batches needs at least one scoring function")
    out = np.empty((len(encoded), width), dtype=np.float32)
    batches = plan_batches(encoded.lengths, batch_size=batch_size, max_tokens=max_tokens,
                           pad_to_multiple_of=pad_to_multiple_of, min_batches=len(fns))

    def score(run: Callable[[dict[str, np.ndarray]], np.ndarray], idx: np.ndarray) -> None:
        result = np.asarray(run(collate(encoded, idx, pad_token_id, pad_to_multiple_of)), dtype=np.float32)
        if result.ndim == 1:
            result = result[:, None]
        if result.shape != (len(idx), width):
            raise ValueError(f"a batch of {len(idx)} pairs gave outputs of shape {result.shape}, "
                             f"expected {(len(idx), width)}")
        out[idx] = result

    if len(fns) == 1 or len(batches) == 1:
        for idx in batches:
            score(fns[0], idx)
            if on_batch is not None:
                on_batch(len(idx))
        return out
    _run_concurrently(fns, batches, score, on_batch)
    return out


def _run_concurrently(fns, batches: list[np.ndarray], score, on_batch) -> None:
    """One thread per scoring function, each taking the next batch in order; the first error is re-raised."""
    lock = threading.Lock()
    state = {"next": 0, "error": None}

    def worker(run) -> None:
        while True:
            with lock:
                i = state["next"]
                if i >= len(batches) or state["error"] is not None:
                    return
                state["next"] = i + 1
            try:
                score(run, batches[i])
            except BaseException as exc:  # handed to the caller's thread below
                with lock:
                    state["error"] = state["error"] or exc
                return
            if on_batch is not None:
                with lock:
                    on_batch(len(batches[i]))

    threads = [threading.Thread(target=worker, args=(run,), daemon=True) for run in fns[: len(batches)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"] is not None:
        raise state["error"]
