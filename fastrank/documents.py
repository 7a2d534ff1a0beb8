"""Documents with a title: what a document may be, and the one rule for how its title reaches the model.

A document is a string, or a mapping with a ``text`` string and an optional ``title`` string (the article's title,
its lead sentence, the page's breadcrumb: whatever says what the text is about). Other keys are the caller's: they
are kept in results and never scored. The model reads a titled document as ``"<title> <sep> <text>"``, where
``<sep>`` is what the tokenizer itself puts between query and document (``[SEP]`` for BERT, ``</s></s>`` for
RoBERTa), so the title is a segment of its own. Training, evaluation, export verification and every runtime backend
read titles through this module (``fastrank.batching.PairEncoder``), so a model trained with titles is scored with
them the same way everywhere.

Why: a lone sentence ("the company has 6,000 employees") often does not say what it is about. On WikiQA, sentences
written as "<article's first sentence> [SEP] <sentence>" in training and scoring lifted test NDCG@10 of the
reranker alone from 0.710 to 0.769-0.786 (README, "Retrieve-then-rerank").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Union

Document = Union[str, Mapping[str, Any]]
DOCUMENT_KEYS = ("text", "title")
FALLBACK_SEPARATOR = "|"


def check_document(doc: Any, where: str) -> None:
    """Raise TypeError (saying what is accepted) unless ``doc`` is a string or a mapping with a ``text`` string and
    an optional ``title`` string; ``where`` names it ("document 3")."""
    if isinstance(doc, str):
        return
    if not isinstance(doc, Mapping):
        hint = " (decode it first: doc.decode('utf-8', errors='replace'))" if isinstance(doc, bytes) else ""
        raise TypeError(f"{where} must be a str or a mapping with a 'text' string and an optional 'title' string, "
                        f"got {type(doc).__name__}{hint}")
    text, title = doc.get("text"), doc.get("title")
    if not isinstance(text, str):
        raise TypeError(f"{where} needs a 'text' string (and may have a 'title' string), got keys {sorted(doc)}"
                        + ("" if text is None else f" with 'text' of type {type(text).__name__}"))
    if title is not None and not isinstance(title, str):
        raise TypeError(f"{where}: 'title' must be a string or absent, got {type(title).__name__}")


def check_documents(documents: Any, name: str = "documents") -> list[Document]:
    """``documents`` as a list, each checked by ``check_document`` (named "document i", or "<name without s> i"); a
    single string, bytes or mapping is a TypeError saying to wrap it, a set one saying it has no order."""
    item = name.removesuffix("s")
    accepted = f"{name} must be a list of {name} (strings or {{'text', 'title'}} mappings)"
    if isinstance(documents, Mapping) and documents and not {"text", "title"} & set(documents) and all(  # {id: text}
            isinstance(v, str) or (isinstance(v, Mapping) and "text" in v) for v in documents.values()):
        raise TypeError(f"{accepted}, got a {type(documents).__name__} of {len(documents)} entries, which is not a "
                        f"{item}: pass list({name}.values()) and keep the keys to map results back by index")
    if isinstance(documents, (str, bytes, Mapping)):
        raise TypeError(f"{accepted}, got a single {type(documents).__name__}; wrap it: [{item}]")
    if documents is None:
        raise TypeError(f"{accepted}, got None")
    if hasattr(documents, "columns") and hasattr(documents, "to_dict"):  # a DataFrame iterates its column names
        raise TypeError(f"{accepted}, got a {type(documents).__name__}, which iterates over its column names: pass "
                        f"its text column (df['text'].tolist()) or its rows (df.to_dict('records'))")
    if isinstance(documents, (set, frozenset)):  # results name documents by position, which a set does not have
        raise TypeError(f"{name} must be an ordered sequence (a list or tuple), got a set: results follow each "
                        f"{item}'s index, which a set has none of; pass list({name}) or sorted({name})")
    docs = list(documents)
    for i, doc in enumerate(docs):
        check_document(doc, f"{item} {i}")
    return docs


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing a tokenizer reads: whitespace, control and format characters only (a
    zero-width space U+200B, a byte-order mark), which BERT-style normalizers drop. ``str.strip`` keeps those, so
    such a query passed the blank check and was scored as an empty one."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def document_parts(doc: Document) -> tuple[str, str]:
    """``(title, text)`` of a checked document; the title is "" when there is none or it is blank (no title)."""
    if isinstance(doc, str):
        return "", doc
    title = doc.get("title") or ""
    return (title if title.strip() else ""), doc["text"]


def has_title(doc: Document) -> bool:
    return bool(document_parts(doc)[0])


def document_text(doc: Document, separator: str) -> str:
    """The text the model reads for ``doc``: its text, or ``"<title> <separator> <text>"`` when it has a title."""
    title, text = document_parts(doc)
    return f"{title} {separator} {text}" if title else text


def document_length(doc: Document) -> int:
    """Characters of ``doc``'s title and text as given (a blank title too): what size limits count."""
    return len(doc) if isinstance(doc, str) else len(doc.get("title") or "") + len(doc["text"])


def pair_separator(tokenizer) -> str:
    """The special tokens a ``tokenizers.Tokenizer`` puts between the two texts of a pair, as text (``[SEP]``,
    ``</s></s>``); ``|`` for a tokenizer that puts none there."""
    from tokenizers import Tokenizer

    probe = Tokenizer.from_str(tokenizer.to_str())
    probe.no_padding()
    probe.no_truncation()
    enc = probe.encode("a", "b")
    seq = enc.sequence_ids
    if 0 not in seq or 1 not in seq:
        return FALLBACK_SEPARATOR
    last_a = max(i for i, s in enumerate(seq) if s == 0)
    first_b = seq.index(1)
    between = [enc.tokens[i] for i in range(last_a + 1, first_b) if seq[i] is None]
    return "".join(between) or FALLBACK_SEPARATOR
