"""Read ranking data and convert it into the four training formats.

Canonical on-disk format: grouped JSONL, one query per line:
``{"query_id": ..., "query": str, "documents": [str, ...], "labels": [0/1 or float, ...]}``
(``"scores"`` instead of / beside ``"labels"`` carries teacher scores for distillation). A document may also be
``{"text": str, "title": str}`` (flat rows: a ``title`` column): the model reads the title as a segment of its own
(``fastrank.documents``); ``join_titles`` writes titles into the text for the training columns.
Readers accept JSONL, CSV/TSV, Parquet and Hugging Face ``datasets`` hub ids, grouped or flat
(``query, document, label`` rows are grouped by query).

Training formats (columns by name, the order the losses read them in):
- ``pairs``: query, document, label
- ``ntuples``: query, positive, negative_1 .. negative_n
- ``lists``: query, documents, labels
- ``distillation``: query, documents, scores
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import inspect
import io
import itertools
import json
import math
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastrank.batching import check_positive_int, lone_surrogate
from fastrank.documents import Document, check_document, document_parts, document_text, has_title, is_blank
from fastrank.errors import DataError

FORMATS = ("pairs", "ntuples", "lists", "distillation")


@dataclass
class QueryGroup:
    """One query with its candidate documents and their labels (and optional teacher scores)."""

    query: str
    documents: list[Document]  # strings, or {"title", "text"} for titled documents
    labels: list[float]
    query_id: str = ""
    scores: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def positives(self) -> list[Document]:
        return [d for d, y in zip(self.documents, self.labels) if y > 0]

    @property
    def negatives(self) -> list[Document]:
        return [d for d, y in zip(self.documents, self.labels) if y <= 0]


def dedup_key(text: str) -> str:
    """Key under which two documents count as the same: case, whitespace and Unicode form ignored.

    Datasets often hold one sentence twice, once as written and once tokenized/lowercased (WikiQA's
    ``train.tokenized`` vs its raw dev/test files: "Paris." vs "paris ."), or once composed and once decomposed
    ("café" as é or as e + a combining accent, NFC vs NFD, which the tokenizer reads alike); such twins must not be
    a positive and a negative at once in a corpus. Compatibility forms stay apart (NFC, not NFKC: "10³" is not
    "103").
    """
    return "".join(unicodedata.normalize("NFC", text).casefold().split())


def document_key(doc: Document) -> str:
    """``dedup_key`` of a document, title included: the same text under another title is another document (titles
    are what tell such texts apart), and a blank title is no title."""
    title, text = document_parts(doc)
    return f"{dedup_key(title)}\0{dedup_key(text)}" if title else dedup_key(text)


def as_number(value: Any, where: str, what: str, booleans: bool = False) -> float:
    """``value`` as a finite float (numbers, numeric strings, JSON booleans); with ``booleans`` also the cells
    "true" / "false" (any case) as 1 / 0: a flat file's boolean label column, as pandas writes it to CSV."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if booleans and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")
    if isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(out):
                return out
    accepted = "a finite number (e.g. 0, 1 or 0.7)" + (" or true/false" if booleans else "")
    raise DataError(f"{where}: {what} must be {accepted}, got {value!r}")


def is_st_sample(record: Any) -> bool:
    """Whether ``record`` is a sentence-transformers reranking sample: a ``positive`` list (and no labels or
    scores). A flat row's ``positive`` cell (a 0/1 flag column of a CSV, say) is a scalar, not such a sample."""
    return isinstance(record, dict) and isinstance(record.get("positive"), list) and \
        not {"labels", "scores"} & set(record)


def _group_from_record(rec: dict[str, Any], where: str) -> QueryGroup:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if is_st_sample(rec):
        from fastrank.evaluation.evaluators import sample_as_labelled  # sentence-transformers' reranking samples

        rec = sample_as_labelled(rec, where)
    missing = [c for c in ("query", "documents") if c not in rec]
    if missing or ("labels" not in rec and "scores" not in rec):
        raise DataError(
            f"{where}: missing column(s) {missing or ['labels']}; a grouped record needs "
            "'query', 'documents' (list of strings) and 'labels' (list of numbers) or 'scores'; "
            f"found {sorted(rec)}"
        )
    query, docs = rec["query"], rec["documents"]
    if not isinstance(query, str) or is_blank(query):
        raise DataError(f"{where}: 'query' must be a non-empty string, got {query!r}")
    check_unicode(query, f"{where}: 'query'")
    if not isinstance(docs, list):
        raise DataError(f"{where}: 'documents' must be a list of strings (or {{'text', 'title'}} objects)")
    docs = [normalize_document(d, f"{where}: document {i}") for i, d in enumerate(docs)]
    labels_raw = rec.get("labels")
    scores_raw = rec.get("scores")
    for name, values in (("labels", labels_raw), ("scores", scores_raw)):
        if values is None:
            continue
        if not isinstance(values, list):
            raise DataError(f"{where}: '{name}' must be a list of numbers, got {type(values).__name__}")
        if len(values) != len(docs):
            raise DataError(
                f"{where}: 'documents' has {len(docs)} items but '{name}' has {len(values)}; they must be equal"
            )
    scores = [as_number(v, where, "each score") for v in scores_raw] if scores_raw is not None else None
    labels = [as_number(v, where, "each label") for v in labels_raw] if labels_raw is not None else list(scores or [])
    meta = {} if labels_raw is not None else {LABELS_FROM_SCORES: where}
    raw_id = rec.get("query_id")
    return QueryGroup(query, list(docs), labels, "" if raw_id is None else str(raw_id), scores, meta)


LABELS_FROM_SCORES = "labels_from_scores"  # meta key: the record had teacher scores only, copied as training targets


def require_labels(groups: Sequence[QueryGroup], what: str) -> None:
    """DataError when a group's labels are a copy of its teacher scores (a distillation record without 'labels'):
    training may use scores as targets, but ``what`` (evaluation, mining, ...) needs relevance labels, and a
    teacher logit above 0 is not a positive."""
    for g in groups:
        where = g.meta.get(LABELS_FROM_SCORES)
        if where is not None:
            raise DataError(f"{where}: {what} needs relevance labels, and this record has teacher 'scores' only; "
                            "add 'labels' (0/1 or graded) next to them")


# Other names of the flat columns, read when the canonical one is absent (compared ignoring case, "_" and spaces):
# the names of public QA / ranking files, e.g. WikiQA's TSVs (QuestionID, Question, Sentence, Label). Names match in
# any case, with or without "_" and spaces ("Query_ID", "query id"). A title is read only from a column named "title"
# (any case): reading one a model was not trained with changes its scores.
FLAT_ALIASES = {
    "query": ("question",),
    "document": ("passage", "sentence", "text"),
    "label": ("relevance",),
    "query_id": ("qid", "questionid"),
    "title": (),
}


def _flat_columns(row: dict[str, Any], source: str) -> dict[str, str]:
    """Canonical flat column -> the column of ``row`` that holds it: the canonical name, else its one alias present
    (``FLAT_ALIASES``); two aliases of one column are a DataError."""
    def squash(name: str) -> str:
        return str(name).lower().replace("_", "").replace(" ", "")

    found = {squash(k): k for k in row}
    columns = {}
    for canonical, aliases in FLAT_ALIASES.items():
        if canonical in row:
            columns[canonical] = canonical
            continue
        present = [found[squash(a)] for a in (canonical, *aliases) if squash(a) in found]
        if len(present) > 1:
            raise DataError(f"{source}: columns {present} could each be the {canonical!r} column; rename the one "
                            f"to read to {canonical!r}")
        if present:
            columns[canonical] = present[0]
    return columns


def _group_flat_rows(rows: Iterable[tuple[str, dict[str, Any]]], source: str) -> list[QueryGroup]:
    """Group flat ``query, document, label`` rows by query (by ``query_id`` where there is one: two queries may ask
    the same thing), keeping first-seen order. Columns may go by the other names of ``FLAT_ALIASES`` (WikiQA's TSVs
    read as they are). ``rows`` are ``(where, row)``: where each row is in ``source``, for errors."""
    groups: dict[str, QueryGroup] = {}
    names: dict[str, str] | None = None
    for where, row in rows:
        names = names if names is not None else _flat_columns(row, source)
        row = {**row, **{canonical: row[name] for canonical, name in names.items() if name in row}}
        missing = [c for c in ("query", "document", "label") if c not in row]
        if missing:
            raise DataError(
                f"{where}: missing column(s) {missing}; flat rows need 'query', 'document', 'label' (or the "
                f"names in fastrank.data.FLAT_ALIASES; or grouped rows with 'documents'/'labels'); found "
                f"{sorted(k for k in row if k not in names or names[k] == k)}"
            )
        q = row["query"]
        if not isinstance(q, str) or is_blank(q):
            raise DataError(f"{where}: 'query' must be a non-empty string, got {q!r}")
        check_unicode(q, f"{where}: 'query'")
        if not isinstance(row["document"], str):
            raise DataError(f"{where}: 'document' must be a string, got {type(row['document']).__name__}")
        title = row.get("title") if isinstance(row.get("title"), str) else None  # CSV: "", Parquet: None or NaN
        raw_id = row.get("query_id")  # CSV: "" when blank, Parquet: None or NaN
        qid = "" if raw_id is None or (isinstance(raw_id, float) and math.isnan(raw_id)) else str(raw_id)
        g = groups.setdefault(qid or q, QueryGroup(q, [], [], qid))  # two queries may share a text, not an id
        if g.query != q:
            raise DataError(f"{where}: query_id {qid!r} has two query texts ({g.query!r} and {q!r}); an id names "
                            "one query")
        g.documents.append(normalize_document({"text": row["document"], "title": title}, where))
        g.labels.append(as_number(row["label"], where, "'label'", booleans=True))
    return list(groups.values())


def check_unicode(text: str, where: str) -> str:
    """``text`` when it is valid Unicode; a DataError naming ``where`` for a lone surrogate (a JSON ``"\\ud800"``
    escape reads as one), which tokenizers and pyarrow refuse later with errors that name no line."""
    bad = lone_surrogate(text)
    if bad is not None:
        raise DataError(f"{where} is not valid Unicode text ({bad}, e.g. from a JSON '\\ud800' escape); fix or drop "
                        "that text")
    return text


def normalize_document(doc: Any, where: str) -> Document:
    """A data file's document: a string as it is; an object as ``{"title", "text"}``, or its text alone when its
    title is missing or blank. Text that is not valid Unicode is a DataError naming it (``check_unicode``)."""
    try:
        check_document(doc, where)
    except TypeError as exc:
        raise DataError(str(exc)) from exc
    for part in ((doc,) if isinstance(doc, str) else (doc["text"], doc.get("title") or "")):
        check_unicode(part, where)
    if isinstance(doc, str):
        return doc
    return {"title": doc["title"], "text": doc["text"]} if has_title(doc) else doc["text"]


def join_titles(groups: Sequence[QueryGroup], separator: str) -> int:
    """Write each titled document of ``groups`` (in place) as the text the model reads, ``"<title> <separator>
    <text>"`` (``fastrank.documents.document_text``), for the training columns, which hold text. Returns how many
    documents had a title."""
    joined = 0
    for g in groups:
        for i, d in enumerate(g.documents):
            if not isinstance(d, str):
                g.documents[i] = document_text(d, separator)
                joined += 1
    return joined


Located = Iterable[tuple[str, dict[str, Any]]]  # (where the record is, e.g. "<path> line 3"; the record)


def records_to_groups(records: Located, source: str) -> list[QueryGroup]:
    """Groups from ``(where, record)`` pairs, grouped records (``documents``) or flat rows, taken one at a time (the
    readers of regular JSONL, CSV, TSV and Parquet files stream their rows, which are then never all held at
    once); a reader stopped by a bad record is closed at once."""
    return list(iter_records_groups(records, source))


def iter_records_groups(records: Located, source: str) -> Iterator[QueryGroup]:
    """``records_to_groups`` a group at a time: grouped records are read as the groups are taken, so a caller that
    stops early (``fastrank bench --quick``) reads no further; flat rows are all read before the first group (a
    query's rows may be anywhere in the file). Closing the iterator closes the reader."""
    reader = iter(records)
    try:
        first = next(reader, None)
        if first is None:
            raise DataError(f"{source} is empty: no records to train or evaluate on")
        records = itertools.chain([first], reader)
        if "documents" in first[1] or is_st_sample(first[1]):  # grouped, or sentence-transformers' samples
            for where, r in records:
                yield _group_from_record(r, where)
        else:
            yield from _group_flat_rows(records, source)
    finally:
        if hasattr(reader, "close"):
            reader.close()  # a reader stopped by a bad record closes its file now, not when the error is dropped


GZIP_MAGIC = b"\x1f\x8b"  # the first bytes of every gzip stream


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text, without a leading byte-order mark (spreadsheets write one); anything else is a
    DataError naming ``source`` and the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith(GZIP_MAGIC):
            raise DataError(f"{source} is gzip-compressed, not text: decompress it (gunzip)") from exc
        utf16 = next((name for bom, name in ((codecs.BOM_UTF16_LE, "UTF-16LE"), (codecs.BOM_UTF16_BE, "UTF-16BE"))
                      if data.startswith(bom)), None)
        if utf16:  # what Windows tools (PowerShell's Out-File, Excel's "Unicode text") write
            raise DataError(f"{source} is {utf16} text (it starts with a UTF-16 byte-order mark), not UTF-8; "
                            f"convert it, e.g. iconv -f UTF-16 -t UTF-8") from exc
        offset = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)  # counted after it
        raise DataError(f"{source} is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); "
                        "convert it, e.g. iconv -f latin1 -t utf-8") from exc


def read_utf8(path: str | Path) -> str:
    """A text file's contents, decoded with ``decode_utf8`` (every data reader goes through here)."""
    return decode_utf8(Path(path).read_bytes(), str(path))


def utf8_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a file read a line at a time (``decoded_lines``)."""
    with Path(path).open("rb") as f:
        yield from decoded_lines(f, str(path))


def decoded_lines(raw_lines: Iterable[bytes], source: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of binary lines split at "\\n" only (which is dropped, as ``str.split`` would),
    decoded as ``decode_utf8`` does: a leading byte-order mark dropped, a byte that is not UTF-8 a DataError naming
    ``source``, the line and the byte (from that line alone: nothing is read again, a pipe could not be)."""
    for n, raw in enumerate(raw_lines, 1):
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError:
            decode_utf8(raw, f"{source} line {n}")
            raise
        yield n, line


def iter_json_records(path: str | Path, text: str | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` of every record of a JSON lines file, read a line at a time (one value per non-blank
    line; ``where`` is "<path> line N"), or of a ``.json`` file holding one JSON array ("<path> item N"); bad JSON is
    a DataError naming the line. ``text`` is the file's contents when the caller has already read them."""
    path = Path(path)
    if text is None and not path.is_file():
        text = read_utf8(path)  # a pipe or a device can be read once: read it whole
    if path.suffix.lower() == ".json" and (_first_line(path) if text is None else text).lstrip().startswith("["):
        try:
            values = json.loads(read_utf8(path) if text is None else text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        yield from ((f"{path} item {i}", v) for i, v in enumerate(values))
        return
    yield from json_lines(path, utf8_lines(path) if text is None else enumerate(text.split("\n"), 1))


def json_lines(path: str | Path, numbered: Iterable[tuple[int, str]]) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` of each non-blank line of ``numbered`` (``(line number, line)`` of ``path``, however it
    was read: plain, gzip-compressed) parsed as JSON; bad JSON is a DataError naming the line."""
    for i, line in numbered:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {i}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        yield f"{path} line {i}", value


def json_records(path: str | Path) -> list[tuple[str, Any]]:
    """``iter_json_records`` as a list."""
    return list(iter_json_records(path))


def json_objects(records: Iterable[tuple[str, Any]]) -> Located:
    """``records`` (``iter_json_records``' pairs), each checked to be a JSON object (a query or a row)."""
    for where, r in records:
        if not isinstance(r, dict):
            raise DataError(f"{where}: expected a JSON object (one per query or row), got {type(r).__name__}")
        yield where, r


def _read_jsonl(path: Path) -> Located:
    return json_objects(iter_json_records(path))


def _csv_quoted_tsv(lines: Iterable[str]) -> bool:
    """Whether a TSV file is quoted as CSV writers quote it (pandas' ``to_csv(sep="\\t")``, Python's csv): every
    cell that opens a quote is one quoted cell, closed before the next tab or the line's end, quotes inside it
    doubled, and some cell doubles a quote. Raw TSV (WikiQA's) holds quotes that are text, even whole cells in
    quotes, but a cell such as '"Weird Al" Yankovic' opens a quote it does not close so: such a file is raw text
    whatever else it holds (one CSV-looking cell read as CSV would swallow the rows after an unclosed quote). A
    quoted cell holding a newline cannot be told from raw text line by line: such a file reads as raw."""
    doubled = False
    for line in lines:
        if '"' in line:
            quoted, line_doubled = _csv_quoted_line(line.rstrip("\r\n"))
            if not quoted:
                return False
            doubled = doubled or line_doubled
    return doubled


def _csv_quoted_line(line: str) -> tuple[bool, bool]:
    """(every cell of ``line`` that opens a quote closes it as CSV does, some cell doubles a quote); linear time."""
    i, doubled = 0, False
    while True:
        if line.startswith('"', i):
            end = i + 1
            while True:
                end = line.find('"', end)
                if end < 0:
                    return False, doubled  # a quote opened and never closed: raw text
                if not line.startswith('"', end + 1):
                    break
                doubled, end = True, end + 2
            if end + 1 == len(line):
                return True, doubled
            if line[end + 1] != "\t":
                return False, doubled  # '"Weird Al" Yankovic': a closing quote inside the cell
            i = end + 2
        else:
            tab = line.find("\t", i)
            if tab < 0:
                return True, doubled
            i = tab + 1


def _read_delimited(path: Path, delimiter: str) -> Located:
    """CSV with quoting; TSV as tab-separated text with no quoting, so a field that starts with a quote (a title in
    quotes) keeps it and cannot swallow the rows after it, unless a cell shows CSV quoting (a quote doubled inside
    a quoted cell, as pandas writes a TSV): such a file is read with it. Rows are read one at a time."""
    text = None if path.is_file() else read_utf8(path)  # a pipe or a device can be read once: read it whole
    quoting = csv.QUOTE_MINIMAL
    if delimiter == "\t":
        if text is None:
            with path.open(encoding="utf-8-sig", errors="replace") as f:  # a bad byte is named by the reading below
                quoted = _csv_quoted_tsv(f)
        else:
            quoted = _csv_quoted_tsv(text.split("\n"))
        quoting = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    if quoting == csv.QUOTE_NONE:
        numbered = utf8_lines(path) if text is None else enumerate(text.split("\n"), 1)
        with contextlib.closing(numbered) if text is None else contextlib.nullcontext():  # closed on an error too
            yield from _delimited_rows(path, _RawTsvReader(line for _, line in numbered), delimiter, quoting)
        return
    try:
        with (path.open(encoding="utf-8-sig", newline="") if text is None else io.StringIO(text, newline="")) as f:
            yield from _delimited_rows(path, csv.DictReader(f, delimiter=delimiter, quoting=quoting), delimiter,
                                       quoting)
    except UnicodeDecodeError:
        read_utf8(path)  # raises the DataError that names the file's first bad byte
        raise


class _RawTsvReader:
    """``csv.DictReader``'s rows of a TSV read as raw text: lines end at "\\n" only (a "\\r\\n" ending dropped),
    cells at tabs. A bare "\\r" inside a cell (old Mac text, a scraped page) is text: csv ends the row there, and
    the rest of the line then failed as a row of its own, its label blamed. A file whose header line holds a "\\r"
    ends its lines with "\\r" alone (classic Mac OS) and is split there."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines, self.line_num, self._cr_lines = lines, 0, None
        self._rows = self._cells()  # one generator: a "\\r" line holds the header and the rows after it
        self.fieldnames: list[str] | None = next(self._rows, None)

    def _cells(self) -> Iterator[list[str]]:
        for line in self._lines:
            line = line[:-1] if line.endswith("\r") else line
            if self._cr_lines is None and line:  # the header decides how lines end
                self._cr_lines = "\r" in line
            for piece in line.split("\r") if self._cr_lines else (line,):
                self.line_num += 1
                if piece:  # csv skips blank lines too
                    yield piece.split("\t")

    def __iter__(self) -> Iterator[dict[Any, Any]]:
        names = self.fieldnames or []
        for cells in self._rows if names else ():
            row: dict[Any, Any] = dict(zip(names, cells))
            if len(cells) > len(names):
                row[None] = cells[len(names):]  # where DictReader keeps the cells past the header's
            row.update((name, None) for name in names[len(cells):])
            yield row


def _delimited_rows(path: Path, reader: csv.DictReader | _RawTsvReader, delimiter: str, quoting: int) -> Located:
    for n, row in enumerate(reader, 1):
        where = f"{path} row {n} (line {reader.line_num})"
        if None in row and not any(cell.strip() for cell in row[None]):
            del row[None]  # a trailing delimiter: empty cells past the header's, nothing lost
        if None in row:  # DictReader keeps the cells past the header's under None
            sep = "tab" if delimiter == "\t" else repr(delimiter)
            fix = (f"quote cells that hold a {sep}" if quoting != csv.QUOTE_NONE else
                   "this TSV file is read as raw text, where a cell cannot hold a tab (CSV quoting is read only when "
                   "every cell that opens a quote closes it on its line, and one doubles a quote): write such text "
                   "as CSV or JSONL")
            raise DataError(
                f"{where}: {len(reader.fieldnames or []) + len(row[None])} cells, more than the header's "
                f"{len(reader.fieldnames or [])} ({sep}-separated); {fix}, or, if the "
                f"file is JSONL, name it .jsonl. Columns read: query, document, label (one pair per row) or "
                f"query, documents, labels (JSON lists)")
        _parse_list_cells(row, where, delimiter)
        yield where, row


# The cells of a grouped CSV/TSV row that hold JSON lists, with an example of each.
LIST_CELLS = {"documents": '["doc a", "doc b"]', "labels": "[1, 0]", "scores": "[0.9, 0.1]"}


def _parse_list_cells(row: dict[str, Any], where: str, delimiter: str) -> None:
    """Parse (in place) each ``LIST_CELLS`` cell of ``row`` that starts with ``[`` as JSON; bad JSON is a DataError
    naming ``where`` ("<path> row N (line M)": N counts data rows, M is the file's line, the header being line 1),
    the column and what is accepted."""
    for column, example in LIST_CELLS.items():
        cell = row.get(column)
        if not isinstance(cell, str) or not cell.lstrip().startswith("["):
            continue
        try:
            row[column] = json.loads(cell)
        except json.JSONDecodeError as exc:
            hint = (' (in a CSV file a cell holding commas or quotes goes in double quotes, its own quotes doubled: '
                    '"[""doc a"", ""doc b""]")' if delimiter == "," else "")
            raise DataError(f"{where}, column {column!r}: not valid JSON ({exc.msg} at character {exc.pos + 1} of "
                            f"the cell {cell[:80]!r}); accepted: a JSON list such as {example}{hint}") from exc


PARQUET_BATCH_ROWS = 4096  # rows converted to Python at a time


def _read_parquet(path: Path) -> Located:
    from fastrank.errors import require

    pq = require("pyarrow.parquet", "train", "reading Parquet files")
    try:
        parquet = pq.ParquetFile(path)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError; its message names no file
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from exc
    n = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                n += 1
                yield f"{path} row {n}", {k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
    except (ValueError, OSError) as exc:  # a damaged page or row group: pyarrow's message names no file
        raise DataError(f"{path} is not a readable Parquet file (after row {n}): {exc}") from exc


def _read_hub(name: str, split: str) -> Located:
    from fastrank.errors import require
    from fastrank.hub import datasets_offline_unless_reachable

    datasets = require("datasets", "train", "loading Hugging Face hub datasets")
    repo, _, config = name.partition(":")
    with datasets_offline_unless_reachable(datasets) as offline:
        try:
            ds = datasets.load_dataset(repo, config or None, split=split)
        except Exception as exc:  # noqa: BLE001 - offline, unknown id, gated: one clear error either way
            why = " (no network: the hub's host does not resolve, so only cached datasets load)" if offline else ""
            raise DataError(f"{name!r} is not a local file, and loading it as a Hugging Face hub dataset failed{why}: "
                            f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    return ((f"{name} row {i}", dict(r)) for i, r in enumerate(ds, 1))


def check_split(source: str | Path, split: str, name: str = "--split") -> None:
    """ValueError unless ``split`` names a split of ``source`` that can have one: a BEIR folder's qrels or a hub
    dataset's split (``read_groups``); a file has none, so a split given with one would be ignored."""
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"{name} must name a split (e.g. 'train', 'dev', 'test'), got {split!r}")
    if split != "train" and Path(str(source)).expanduser().is_file():
        raise ValueError(f"{name}={split!r} picks a split of a BEIR folder (qrels/{split}.tsv) or of a hub dataset; "
                         f"{str(source)!r} is a file, which has none: leave {name} out")


def read_groups(source: str | Path, split: str = "train") -> list[QueryGroup]:
    """Read a ranking dataset into query groups.

    ``source`` is a path (``.jsonl``/``.json``, ``.csv``, ``.tsv``, ``.parquet``), a BEIR folder (``split``'s judged
    documents, ``fastrank.evaluation.beir.beir_groups``) or a Hugging Face hub id (``org/name`` or
    ``org/name:config``; needs network). Rows may be grouped (``query, documents, labels``) or flat (``query,
    document, label``).
    """
    return list(iter_groups(source, split))


def iter_groups(source: str | Path, split: str = "train") -> Iterator[QueryGroup]:
    """``read_groups`` a group at a time (``iter_records_groups``); a missing file or an unknown suffix is an error
    at once, bad records as they are reached."""
    text = str(source)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if path.exists():
        if path.is_dir():
            from fastrank.evaluation.beir import beir_groups, is_beir_dir

            if is_beir_dir(path):
                return iter(beir_groups(path, split))
            raise DataError(f"{text} is a directory; expected a .jsonl, .csv, .tsv or .parquet file, or a BEIR "
                            "folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
        readers = {".jsonl": _read_jsonl, ".json": _read_jsonl, ".parquet": _read_parquet,
                   ".csv": lambda p: _read_delimited(p, ","), ".tsv": lambda p: _read_delimited(p, "\t")}
        if suffix not in readers:
            raise DataError(f"{text}: unsupported file type {suffix!r}; accepted: {', '.join(sorted(readers))}")
        return iter_records_groups(readers[suffix](path), text)
    if suffix in (".jsonl", ".json", ".csv", ".tsv", ".parquet") or text.startswith(("/", ".", "~")):
        raise DataError(f"data file {text!r} does not exist")
    return iter_records_groups(_read_hub(text, split), text)


def json_document(line: str) -> Document | None:
    """The document a JSONL line holds (a JSON string, or an object's ``text`` / ``document`` with its ``title``
    if it has one, as ``{"title", "text"}``), else None."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    if isinstance(value, dict):
        try:
            return normalize_document({"text": value.get("text", value.get("document")), "title": value.get("title")},
                                      "")
        except DataError:
            return None
    return value if isinstance(value, str) else None


def json_documents(lines: Sequence[str], source: str, hint: str = "") -> list[Document]:
    """Every line's ``json_document``; a line that holds none is a DataError naming it (``hint`` is appended)."""
    docs = []
    for n, line in enumerate(lines, 1):
        doc = json_document(line)
        if doc is None:
            raise DataError(f"{source} line {n}: expected a JSON string or an object with a 'text' or 'document' "
                            f"string (and optionally a 'title' string), got {line[:80]!r}{hint}")
        docs.append(doc)
    return docs


def check_input_file(path: Path, what: str) -> None:
    """DataError unless ``path`` exists and is not a directory (a device or a pipe is read): ``what`` names it, e.g.
    "corpus file"."""
    if not path.exists() or path.is_dir():
        problem = "is a directory; give a file" if path.is_dir() else "does not exist"
        raise DataError(f"{what} {str(path)!r} {problem}")


def text_lines(text: str) -> list[str]:
    """The non-empty lines of ``text``, split at "\\r\\n", "\\n" or "\\r" only: ``str.splitlines`` also splits
    at form feeds (pdftotext's page breaks), U+2028 and other breaks a document or a JSON string may hold."""
    return [line for line in re.split(r"\r\n|\n|\r", text) if line.strip()]


def read_corpus(source: str | Path) -> list[Document]:
    """The documents of a corpus file: ``.txt`` one per non-empty line; ``.jsonl`` / ``.json`` whose first line is
    a JSON string or an object with ``text`` / ``document`` (every line read so, as ``rerank``'s documents file);
    else any dataset ``read_groups`` reads (every document of every query, labelled or not). Titled documents come
    back as ``{"title", "text"}``."""
    path = Path(source).expanduser()
    check_input_file(path, "corpus file")
    if path.suffix.lower() == ".txt":
        return text_lines(read_utf8(path))
    if path.suffix.lower() in (".jsonl", ".json"):
        text = None if path.is_file() else read_utf8(path)  # a pipe or a device can be read once: read it whole
        if json_document(_first_line(path) if text is None else next(iter(text_lines(text)), "")) is not None:
            return json_documents(text_lines(read_utf8(path) if text is None else text), str(source))
        if text is not None:
            groups = records_to_groups(json_objects(iter_json_records(path, text)), str(source))
            return [d for g in groups for d in g.documents]
    return [d for g in read_groups(path) for d in g.documents]


def _first_line(path: Path) -> str:
    """The first non-blank line of a file, read alone (decoding errors replaced: it only picks the reader)."""
    with path.open("rb") as f:
        for raw in f:
            line = raw.decode("utf-8-sig", errors="replace")
            if line.strip():
                return line
    return ""


# The file names ``write_groups`` writes: grouped JSONL, the one format fastrank writes, under a name
# ``read_groups`` reads back as JSONL.
GROUPS_SUFFIXES = (".jsonl", ".json")


def check_groups_path(path: str | Path, what: str = "the output file") -> Path:
    """``path`` as a Path if its suffix names grouped JSONL (``GROUPS_SUFFIXES``), else a DataError: JSONL under
    another suffix (``.csv``) would be read back as that format and fail. Call it before long work (mining)."""
    path = Path(path)
    if path.suffix.lower() not in GROUPS_SUFFIXES:
        found = f"not {path.suffix!r}" if path.suffix else "it has no suffix"
        raise DataError(f"{what} {str(path)!r}: grouped data is written as JSONL only, so the name must end in "
                        f"{' or '.join(GROUPS_SUFFIXES)} ({found}); CSV, TSV and Parquet are read, not written")
    return path


def write_groups(groups: Iterable[QueryGroup], path: str | Path) -> Path:
    """Write groups as grouped JSONL (the canonical format) to a ``.jsonl`` / ``.json`` path
    (``check_groups_path``)."""
    from fastrank.io import atomic_file

    path = check_groups_path(path)
    with atomic_file(path) as f:  # nothing half-written is left behind; racing writers each write their own file
        for i, g in enumerate(groups):
            rec: dict[str, Any] = {"query_id": g.query_id or str(i), "query": g.query, "documents": g.documents}
            if LABELS_FROM_SCORES not in g.meta:  # labels copied from teacher scores are not written as labels
                rec["labels"] = g.labels
            if g.scores is not None:
                rec["scores"] = g.scores
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def to_pairs(groups: Sequence[QueryGroup]) -> dict[str, list]:
    """Flatten groups into ``query, document, label`` columns."""
    cols: dict[str, list] = {"query": [], "document": [], "label": []}
    for g in groups:
        for d, y in zip(g.documents, g.labels):
            cols["query"].append(g.query)
            cols["document"].append(d)
            cols["label"].append(y)
    return cols


def to_lists(groups: Sequence[QueryGroup], max_documents: int | None = None, seed: int = 0) -> dict[str, list]:
    """``query, documents, labels`` columns; groups without a positive are dropped (nothing to rank up).

    ``max_documents`` (an integer >= 1, or None for no cap) caps each list: its positives (the first
    ``max_documents - 1`` of them when there are more, so a list with negatives keeps one to rank below them), then
    a random sample of its negatives, in the list's own order.
    """
    max_documents = check_positive_int(max_documents, "max_documents", optional=True)
    rng = random.Random(seed)
    cols: dict[str, list] = {"query": [], "documents": [], "labels": []}
    for g in groups:
        if not any(y > 0 for y in g.labels):
            continue
        idx = list(range(len(g.documents)))
        if max_documents is not None and len(idx) > max_documents:
            pos = [i for i in idx if g.labels[i] > 0]
            neg = [i for i in idx if g.labels[i] <= 0]
            pos = pos[:max_documents - 1 if neg and max_documents > 1 else max_documents]
            idx = sorted(pos + rng.sample(neg, min(len(neg), max_documents - len(pos))))
        cols["query"].append(g.query)
        cols["documents"].append([g.documents[i] for i in idx])
        cols["labels"].append([g.labels[i] for i in idx])
    return cols


def to_ntuples(groups: Sequence[QueryGroup], num_negatives: int = 1, seed: int = 0) -> dict[str, list]:
    """One row per positive: ``query, positive, negative_1..negative_n`` with negatives drawn from its group.

    Groups with fewer negatives than ``num_negatives`` repeat theirs; groups with none are skipped (in-batch
    negatives alone cannot stand in for the missing hard negatives column).
    """
    if num_negatives < 0:
        raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
    rng = random.Random(seed)
    cols: dict[str, list] = {"query": [], "positive": []}
    cols.update({f"negative_{i + 1}": [] for i in range(num_negatives)})
    for g in groups:
        negs = g.negatives
        if num_negatives and not negs:
            continue
        for pos in g.positives:
            cols["query"].append(g.query)
            cols["positive"].append(pos)
            picks = rng.sample(negs, num_negatives) if len(negs) >= num_negatives else [
                negs[i % len(negs)] for i in range(num_negatives)]
            for i, neg in enumerate(picks):
                cols[f"negative_{i + 1}"].append(neg)
    return cols


def to_distillation(groups: Sequence[QueryGroup]) -> dict[str, list]:
    """``query, documents, scores`` columns from groups that carry teacher scores."""
    missing = [g.query_id or g.query for g in groups if g.scores is None]
    if missing:
        raise DataError(
            f"distillation needs teacher 'scores' for every query; {len(missing)} have none (first: {missing[0]!r}). "
            "Add a 'scores' list per record (e.g. from `fastrank mine --teacher`)."
        )
    return {"query": [g.query for g in groups], "documents": [g.documents for g in groups],
            "scores": [g.scores for g in groups]}


def convert(groups: Sequence[QueryGroup], data_format: str, **kwargs: Any) -> dict[str, list]:
    """Convert groups into the columns of ``data_format`` (one of FORMATS)."""
    converters = {"pairs": to_pairs, "lists": to_lists, "ntuples": to_ntuples, "distillation": to_distillation}
    if data_format not in converters:
        raise ValueError(f"unknown data format {data_format!r}; accepted: {', '.join(FORMATS)}")
    accepted = [n for n in inspect.signature(converters[data_format]).parameters if n != "groups"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{unknown} do(es) not apply to the {data_format!r} format; its options: "
                         f"{', '.join(accepted) or 'none'}")
    cols = converters[data_format](groups, **kwargs)
    if not cols["query"]:
        raise DataError(f"no training rows left after converting to {data_format!r} (are there positives?)")
    return cols


def load_dataset(source: str | Path, data_format: str = "pairs", split: str = "train", separator: str | None = None,
                 **kwargs: Any) -> Any:
    """Read ``source`` and return a ``datasets.Dataset`` in ``data_format`` — ready for CrossEncoderTrainer.
    Titled documents are joined into text with ``separator`` (``CrossEncoder.pair_encoder().separator``), which
    such data needs."""
    from fastrank.errors import require

    datasets = require("datasets", "train", "building training datasets")
    groups = read_groups(source, split=split)
    if separator is not None:
        join_titles(groups, separator)
    elif any(not isinstance(d, str) for g in groups for d in g.documents):
        raise DataError(
            f"{source} has titled documents ({{'title', 'text'}}) and training columns hold text: pass separator=, "
            "what the model's tokenizer puts between two texts (CrossEncoder(...).pair_encoder().separator, '[SEP]' "
            "for BERT), so titles are joined as the model reads them at rerank time"
        )
    return datasets.Dataset.from_dict(convert(groups, data_format, **kwargs))
