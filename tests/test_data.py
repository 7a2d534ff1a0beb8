"""Readers and format converters: values, and errors that name the problem."""

from __future__ import annotations

import codecs
import json

import pytest

from fastrank.data import convert, read_corpus, read_groups, to_lists, to_ntuples, to_pairs, write_groups
from fastrank.errors import DataError

RECORDS = [
    {"query_id": "a", "query": "q1", "documents": ["d1", "d2", "d3"], "labels": [0, 1, 0]},
    {"query_id": "b", "query": "q2", "documents": ["e1", "e2"], "labels": [1, 0]},
    {"query_id": "c", "query": "q3", "documents": ["f1"], "labels": [0]},
]


def _jsonl(tmp_path, records, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_grouped_jsonl_roundtrip(tmp_path):
    groups = read_groups(_jsonl(tmp_path, RECORDS))
    assert [g.query for g in groups] == ["q1", "q2", "q3"]
    assert groups[0].positives == ["d2"] and groups[0].negatives == ["d1", "d3"]
    again = read_groups(write_groups(groups, tmp_path / "out.jsonl"))
    assert [(g.query, g.documents, g.labels) for g in again] == [(g.query, g.documents, g.labels) for g in groups]


def test_flat_csv_tsv_and_parquet_are_grouped(tmp_path):
    rows = [("q1", "d1", 0), ("q1", "d2", 1), ("q2", "e1", 1)]
    (tmp_path / "p.csv").write_text("query,document,label\n" + "".join(f"{q},{d},{y}\n" for q, d, y in rows))
    (tmp_path / "p.tsv").write_text("query\tdocument\tlabel\n" + "".join(f"{q}\t{d}\t{y}\n" for q, d, y in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"query": [r[0] for r in rows], "document": [r[1] for r in rows],
                             "label": [r[2] for r in rows]}), tmp_path / "p.parquet")
    for name in ("p.csv", "p.tsv", "p.parquet"):
        groups = read_groups(tmp_path / name)
        assert [(g.query, g.documents, g.labels) for g in groups] == [
            ("q1", ["d1", "d2"], [0.0, 1.0]), ("q2", ["e1"], [1.0])], name


def test_converters():
    groups = read_groups_from(RECORDS)
    pairs = to_pairs(groups)
    assert len(pairs["query"]) == 6 and pairs["label"] == [0, 1, 0, 1, 0, 0]
    lists = to_lists(groups)
    assert lists["query"] == ["q1", "q2"]  # q3 has no positive: nothing to rank up
    tuples = to_ntuples(groups, num_negatives=2, seed=1)
    assert list(tuples) == ["query", "positive", "negative_1", "negative_2"]
    assert tuples["positive"] == ["d2", "e1"]
    assert sorted([tuples["negative_1"][0], tuples["negative_2"][0]]) == ["d1", "d3"]
    assert tuples["negative_1"][1] == tuples["negative_2"][1] == "e2"  # only one negative: repeated
    capped = to_lists(groups, max_documents=2)
    assert all(len(d) <= 2 for d in capped["documents"]) and all(1.0 in y for y in capped["labels"])


def read_groups_from(records):
    from fastrank.data import records_to_groups

    return records_to_groups([(f"test line {i}", r) for i, r in enumerate(records, 1)], "test")


@pytest.mark.parametrize(
    "record, message",
    [
        ({"query": "q", "documents": ["a"]}, r"missing column\(s\) \['labels'\]"),
        ({"query": "q", "documents": ["a", "b"], "labels": [1]}, "'documents' has 2 items but 'labels' has 1"),
        ({"query": "q", "documents": ["a"], "labels": ["yes"]}, "label must be a finite number"),
        ({"query": "", "documents": ["a"], "labels": [1]}, "non-empty string"),
        ({"query": "q", "documents": "a", "labels": [1]}, "list of strings"),
    ],
)
def test_bad_records_name_the_problem(tmp_path, record, message):
    with pytest.raises(DataError, match=message):
        read_groups(_jsonl(tmp_path, [record]))


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_groups(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        read_groups(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"query": "q"\n')
    with pytest.raises(DataError, match="line 1: not valid JSON"):
        read_groups(tmp_path / "bad.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unsupported file type"):
        read_groups(tmp_path / "x.xml")


def test_a_boolean_label_column_written_by_pandas_reads_as_0_and_1(tmp_path):
    (tmp_path / "p.csv").write_text("query,document,label\nq,a,True\nq,b,False\nq,c, true \n")
    assert read_groups(tmp_path / "p.csv")[0].labels == [1.0, 0.0, 1.0]
    (tmp_path / "bad.csv").write_text("query,document,label\nq,a,yes\n")
    with pytest.raises(DataError, match=r"row 1 \(line 2\): 'label' must be a finite number .* or true/false, "
                                        r"got 'yes'"):
        read_groups(tmp_path / "bad.csv")


def test_flat_rows_missing_label(tmp_path):
    (tmp_path / "p.csv").write_text("query,document\nq,d\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['label'\]"):
        read_groups(tmp_path / "p.csv")


def test_convert_rejects_unknown_format_and_no_rows():
    groups = read_groups_from(RECORDS[2:])
    with pytest.raises(ValueError, match="accepted: pairs, ntuples, lists, distillation"):
        convert(groups, "triples")
    with pytest.raises(DataError, match="no training rows left"):
        convert(groups, "lists")
    with pytest.raises(DataError, match="teacher 'scores'"):
        convert(groups, "distillation")
    with pytest.raises(ValueError, match=r"\['num_negatives'\] do\(es\) not apply to the 'pairs' format"):
        convert(read_groups_from(RECORDS), "pairs", num_negatives=2)


def test_a_file_that_is_not_utf8_is_named_with_its_first_bad_byte(tmp_path):
    from fastrank.evaluation.evaluators import RerankingEvaluator

    record = {"query": "café?", "documents": ["crème", "tea"], "labels": [1, 0]}
    for name in ("data.jsonl", "data.tsv"):
        path = tmp_path / name
        text = json.dumps(record, ensure_ascii=False) if name.endswith("jsonl") else "query\tdocument\tlabel\ncafé?\tcrème\t1"
        path.write_bytes(text.encode("latin-1"))
        where = "data.jsonl line 1" if name.endswith("jsonl") else "data.tsv line 2"  # both read a line at a time
        with pytest.raises(DataError, match=rf"{where} is not UTF-8 text \(byte 0xe9 at offset \d+\)"):
            read_groups(str(path))
    with pytest.raises(DataError, match=r"data.jsonl line 1 is not UTF-8 text \(byte 0xe9 at offset 14\)"):
        RerankingEvaluator.from_jsonl(tmp_path / "data.jsonl")
    lines = tmp_path / "third.jsonl"  # the line named from the line itself: the file was read again whole for it
    lines.write_bytes(((json.dumps(record) + "\n") * 2 + json.dumps(record, ensure_ascii=False)).encode("latin-1"))
    with pytest.raises(DataError, match=r"third.jsonl line 3 is not UTF-8 text \(byte 0xe9 at offset 14\)"):
        read_groups(str(lines))
    import gzip

    zipped = tmp_path / "zipped.jsonl"
    zipped.write_bytes(gzip.compress(lines.read_bytes()))
    with pytest.raises(DataError, match=r"zipped.jsonl line 1 is gzip-compressed, not text: decompress it"):
        read_groups(str(zipped))
    (tmp_path / "ok.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_groups(str(tmp_path / "ok.jsonl"))[0].documents == ["crème", "tea"]


def test_read_corpus_takes_plain_text_jsonl_documents_and_datasets(tmp_path):
    (tmp_path / "c.txt").write_text('"Quoted" first line\n\n{brace} second\n', encoding="utf-8")
    assert read_corpus(tmp_path / "c.txt") == ['"Quoted" first line', "{brace} second"]
    (tmp_path / "c.jsonl").write_text('"a string"\n{"text": "an object"}\n{"document": "another"}\n')
    assert read_corpus(tmp_path / "c.jsonl") == ["a string", "an object", "another"]
    (tmp_path / "bom.jsonl").write_bytes(b'\xef\xbb\xbf\n"a string"\n"two"\n')  # a BOM, a blank line
    assert read_corpus(tmp_path / "bom.jsonl") == ["a string", "two"]
    _jsonl(tmp_path, [{"query": "q", "documents": ["x", "y"], "labels": [1, 0]}], name="groups.jsonl")
    assert read_corpus(tmp_path / "groups.jsonl") == ["x", "y"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(DataError, match="bad.jsonl line 2: expected a JSON string"):
        read_corpus(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="corpus file .* does not exist"):
        read_corpus(tmp_path / "missing.txt")


def test_tsv_quotes_bom_and_json_arrays(tmp_path):
    tsv = tmp_path / "wq.tsv"  # as WikiQA's TSVs: a sentence may start with a quote, without closing it
    tsv.write_text('query\tdocument\tlabel\nq1\t"Gloria" (a hymn) is old\t1\nq1\tanother line\t0\n'
                   'q2\t"an open quote\t0\nq2\tthe answer\t1\n', encoding="utf-8")
    groups = read_groups(str(tsv))
    assert [g.documents for g in groups] == [['"Gloria" (a hymn) is old', "another line"],
                                             ['"an open quote', "the answer"]]
    assert [g.labels for g in groups] == [[1.0, 0.0], [0.0, 1.0]]
    csv_bom = tmp_path / "excel.csv"
    csv_bom.write_bytes("query,document,label\nq,d,1\n".encode("utf-8-sig"))
    assert read_groups(str(csv_bom))[0].query == "q"
    array = tmp_path / "groups.json"
    array.write_text(json.dumps([{"query": "q", "documents": ["a", "b"], "labels": [1, 0]}]))
    assert read_groups(str(array))[0].documents == ["a", "b"]
    array.write_text(json.dumps([{"query": "q", "documents": ["a"], "labels": [1]}, "stray"]))
    with pytest.raises(DataError, match=r"groups\.json item 1: expected a JSON object .* got str"):
        read_groups(str(array))


def test_a_name_that_is_neither_a_file_nor_a_hub_dataset_is_a_data_error(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import fastrank.hub

    modes = []

    def offline(*args, **kwargs):
        modes.append(datasets.config.HF_HUB_OFFLINE)
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(fastrank.hub, "hub_host_resolves", lambda: True)
    with pytest.raises(DataError, match="'mydata' is not a local file, and loading it as a Hugging Face hub dataset "
                                        "failed: ConnectionError"):
        read_groups("mydata")
    # no network: datasets' offline mode (cached datasets only) instead of ~25 s of retries, then restored
    monkeypatch.setattr(fastrank.hub, "hub_host_resolves", lambda: False)
    with pytest.raises(DataError, match=r"hub dataset failed \(no network: the hub's host does not resolve, so only "
                                        r"cached datasets load\): ConnectionError"):
        read_groups("mydata")
    assert modes == [False, True] and datasets.config.HF_HUB_OFFLINE is False


def test_flat_columns_go_by_their_common_other_names(tmp_path):
    other = tmp_path / "qa.csv"
    other.write_text("QID,Question,Passage,Relevance,DocumentTitle\n7,q,first,1,T\n7,q,second,0,T\n")
    (g,) = read_groups(str(other))
    assert (g.query_id, g.query, g.documents, g.labels) == ("7", "q", ["first", "second"], [1.0, 0.0])  # no title
    both = tmp_path / "both.csv"
    both.write_text("query,passage,text,label\nq,a,b,1\n")
    with pytest.raises(DataError, match=r"columns \['passage', 'text'\] could each be the 'document' column"):
        read_groups(str(both))
    canonical = tmp_path / "canonical.csv"
    canonical.write_text("query,document,text,label\nq,a,b,1\n")  # the canonical name wins over an alias
    assert read_groups(str(canonical))[0].documents == ["a"]
    # "Query_ID" was not read as the id (two queries of one text merged into one); "Title" was not read as a title
    cased = tmp_path / "cased.csv"
    cased.write_text("Query_ID,Query,Document,Title,Label\nQ1,same,a,T1,1\nQ2,same,b,T2,0\n")
    assert [(g.query_id, g.documents, g.labels) for g in read_groups(str(cased))] == [
        ("Q1", [{"title": "T1", "text": "a"}], [1.0]), ("Q2", [{"title": "T2", "text": "b"}], [0.0])]


def test_a_tsv_written_with_csv_quoting_is_read_with_it(tmp_path):
    """pandas' ``to_csv(sep="\\t")`` and Python's csv quote a cell holding a quote or a tab; read as raw text, the
    cell kept its quotes doubled ('"has ""quote"" inside"'), silently. Raw TSV (WikiQA's, a whole sentence in quotes
    included) still reads as it is written."""
    import csv as csv_module

    rows = [("q", 'has "quote" inside', 1), ("q", "a\ttab", 0), ("q", '"whole quote"', 0), ("q", "plain", 0)]
    with (tmp_path / "w.tsv").open("w", newline="") as f:
        writer = csv_module.writer(f, delimiter="\t")
        writer.writerow(["query", "document", "label"])
        writer.writerows(rows)
    assert read_groups(tmp_path / "w.tsv")[0].documents == [d for _, d, _ in rows]
    raw = tmp_path / "raw.tsv"
    raw.write_text('query\tdocument\tlabel\nq\t"With the exception of water."\t1\nq\t"open quote\t0\nq\ta"b""\t0\n')
    assert read_groups(raw)[0].documents == ['"With the exception of water."', '"open quote', 'a"b""']
    # one CSV-looking cell in a raw file: read as CSV, the unclosed quote above it swallowed the rows after it
    mixed = tmp_path / "mixed.tsv"
    lines = ['q1\t"Weird Al" Yankovic is a singer\t1', 'q1\t"Open quote never closed\t0', "q2\tplain\t0",
             'q2\tThe CSV escape for a quote is "" as in "a ""b"""\t1', 'q3\t"He said ""no"" twice"\t1', "q3\tlast\t0"]
    mixed.write_text("query\tdocument\tlabel\n" + "\n".join(lines) + "\n")
    assert [len(g.documents) for g in read_groups(mixed)] == [2, 2, 2]
    assert read_groups(mixed)[2].documents[0] == '"He said ""no"" twice"'
    (tmp_path / "tab.tsv").write_text('query\tdocument\tlabel\nq\t"a\tb"\t1\n')  # no quote doubled: raw
    with pytest.raises(DataError, match=r"read as raw text, where a cell cannot hold a tab \(CSV quoting is read only "
                                        r"when every cell that opens a quote closes it"):
        read_groups(tmp_path / "tab.tsv")


@pytest.mark.data
def test_wikiqa_original_tsv_reads_as_its_jsonl(wikiqa_dir):
    """WikiQA's own test TSV (QuestionID, Question, ..., Sentence, Label) is the same 243 queries as test.jsonl."""
    tsv = read_groups(str(wikiqa_dir / "WikiQA-test-gold.tsv"))
    jsonl = read_groups(str(wikiqa_dir / "test.jsonl"))
    assert [(g.query_id, g.query, g.documents, g.labels) for g in tsv] == \
        [(g.query_id, g.query, g.documents, g.labels) for g in jsonl]


def test_flat_rows_are_grouped_by_query_id_where_there_is_one(tmp_path):
    same = tmp_path / "same.tsv"
    same.write_text("query_id\tquery\tdocument\tlabel\nQ1\twhat is it\ta first\t1\nQ2\twhat is it\tb first\t0\n"
                    "Q1\twhat is it\ta second\t0\nQ2\twhat is it\tb second\t1\n")
    assert [(g.query_id, g.documents, g.labels) for g in read_groups(str(same))] == [
        ("Q1", ["a first", "a second"], [1.0, 0.0]), ("Q2", ["b first", "b second"], [0.0, 1.0])]
    clash = tmp_path / "clash.csv"
    clash.write_text("query_id,query,document,label\nQ1,one,a,1\nQ1,two,b,0\n")
    with pytest.raises(DataError, match=r"clash.csv row 2 \(line 3\): query_id 'Q1' has two query texts"):
        read_groups(str(clash))


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
def test_a_bad_byte_is_named_at_its_offset_in_the_data_with_or_without_a_bom(tmp_path, bom):
    from fastrank.data import decode_utf8

    data = bom + b"hello\nwor\xffld\n"  # the codec counts from after a BOM: the message named 'w' at offset 9
    offset = len(bom) + 9
    assert data[offset] == 0xFF
    with pytest.raises(DataError) as caught:
        decode_utf8(data, "<stdin>")
    assert str(caught.value) == (f"<stdin> is not UTF-8 text (byte 0xff at offset {offset}); convert it, e.g. iconv "
                                 "-f latin1 -t utf-8")
    path = tmp_path / "data.tsv"
    path.write_bytes(bom + "query\tdocument\tlabel\ncafé\tx\t1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"data\.tsv line 2 is not UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_groups(str(path))  # a raw TSV is read a line at a time: the byte is named in its line
    path = tmp_path / "data.csv"
    path.write_bytes(bom + "query,document,label\ncafé,x,1\n".encode("latin-1"))
    offset = len(bom) + len(b"query,document,label\ncaf")
    with pytest.raises(DataError, match=rf"data\.csv is not UTF-8 text \(byte 0xe9 at offset {offset}\)"):
        read_groups(str(path))


def test_a_list_cell_of_a_grouped_csv_or_tsv_that_is_not_json_names_file_row_and_column(tmp_path):
    good = '"[""a"", ""b""]","[1, 0]"'
    path = tmp_path / "groups.csv"
    path.write_text(f'query,documents,labels\nq1,{good}\nq2,"[""a"" ""b""]","[1, 0]"\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_groups(str(path))
    assert str(caught.value) == (
        f"{path} row 2 (line 3), column 'documents': not valid JSON (Expecting ',' delimiter at character 6 of the "
        """cell '["a" "b"]'); accepted: a JSON list such as ["doc a", "doc b"] (in a CSV file a cell holding """
        '''commas or quotes goes in double quotes, its own quotes doubled: "[""doc a"", ""doc b""]")''')
    tsv = tmp_path / "groups.tsv"
    tsv.write_text('query\tdocuments\tlabels\tscores\nq1\t["a", "b"]\t[1, 0]\t [0.9, 0.1\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_groups(str(tsv))
    assert str(caught.value) == (
        f"{tsv} row 1 (line 2), column 'scores': not valid JSON (Expecting ',' delimiter at character 11 of the "
        "cell ' [0.9, 0.1'); accepted: a JSON list such as [0.9, 0.1]")
    path.write_text(f"query,documents,labels\nq1,{good}\n", encoding="utf-8")
    assert [(g.documents, g.labels) for g in read_groups(str(path))] == [(["a", "b"], [1.0, 0.0])]


@pytest.mark.parametrize("name", ["out.csv", "out.parquet", "out"])
def test_write_groups_refuses_a_name_it_would_not_read_back_as_jsonl(tmp_path, name):
    groups = read_groups_from(RECORDS)
    with pytest.raises(DataError) as caught:
        write_groups(groups, tmp_path / name)
    found = f"not {(tmp_path / name).suffix!r}" if "." in name else "it has no suffix"
    assert str(caught.value) == (f"the output file {str(tmp_path / name)!r}: grouped data is written as JSONL only, "
                                 f"so the name must end in .jsonl or .json ({found}); CSV, TSV and Parquet are read, "
                                 "not written")
    assert list(tmp_path.iterdir()) == []
    again = read_groups(write_groups(groups, tmp_path / "OUT.JSON"))
    assert [(g.query, g.documents, g.labels) for g in again] == [(g.query, g.documents, g.labels) for g in groups]


def test_errors_name_the_line_of_the_file_not_the_record_count(tmp_path):
    """A blank line in JSONL and the header of a CSV made "line N" count records, one off from the file's line."""
    jsonl = tmp_path / "g.jsonl"
    jsonl.write_text('{"query": "q1", "documents": ["a"], "labels": [1]}\n\n'
                     '{"query": "q2", "documents": ["a", "b"], "labels": [1]}\n')
    with pytest.raises(DataError, match=r"g\.jsonl line 3: "):
        read_groups(str(jsonl))
    csv_path = tmp_path / "g.csv"
    csv_path.write_text('query,documents,labels\nq1,"[""a"", ""b""]","[1]"\n')
    with pytest.raises(DataError, match=r"g\.csv row 1 \(line 2\): "):
        read_groups(str(csv_path))
    flat = tmp_path / "f.jsonl"
    flat.write_text('{"query": "q", "document": "a", "label": 1}\n\n{"query": "q", "document": 3, "label": 0}\n')
    with pytest.raises(DataError, match=r"f\.jsonl line 3: 'document' must be a string"):
        read_groups(str(flat))


def test_teacher_scores_are_never_taken_for_relevance_labels(tmp_path):
    """A distillation record (scores, no labels) trains on its scores; evaluation, retrieval evaluation, mining and
    verification need labels and refuse it, from CSV as from JSONL (a teacher logit above 0 is not a positive)."""
    from fastrank.data import read_groups
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.evaluation.retrieval import RetrievalTask
    from fastrank.export.verify import normalize_groups
    from fastrank.mining import mine_hard_negatives

    csv_file = tmp_path / "teacher.csv"
    csv_file.write_text('query,documents,scores\nq,"[""a"",""b"",""c""]","[-3.2, 0.1, 4.5]"\n')
    (group,) = read_groups(str(csv_file))
    assert group.scores == [-3.2, 0.1, 4.5]  # training targets, as before
    refused = "row 1 \\(line 2\\): .* needs relevance labels, and this record has teacher 'scores' only"
    for call in (lambda: RerankingEvaluator.from_file(csv_file), lambda: RetrievalTask.from_groups([group]),
                 lambda: mine_hard_negatives([group], None), lambda: normalize_groups(str(csv_file))):
        with pytest.raises(DataError, match=refused):
            call()
    labelled = tmp_path / "both.csv"
    labelled.write_text('query,documents,labels,scores\nq,"[""a"",""b""]","[1, 0]","[2.0, -1.0]"\n')
    assert RerankingEvaluator.from_file(labelled).queries[0].labels.tolist() == [1, 0]


def test_documents_split_at_newlines_only(tmp_path):
    """A form feed (pdftotext's page break) or U+2028 inside a document or a JSON string does not cut it in two."""
    import json

    from fastrank.cli.rerank import parse_documents
    from fastrank.data import read_corpus

    corpus = tmp_path / "c.txt"
    corpus.write_text("page one\x0cstill page one\r\nsecond \u2028 doc\n\n", encoding="utf-8")
    assert read_corpus(corpus) == ["page one\x0cstill page one", "second \u2028 doc"]
    text = json.dumps({"text": "a\u2028b"}, ensure_ascii=False) + "\n" + json.dumps("c\x85d", ensure_ascii=False)
    assert parse_documents(text, "docs.jsonl") == ["a\u2028b", "c\x85d"]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(text + "\r\n", encoding="utf-8")
    assert read_corpus(jsonl) == ["a\u2028b", "c\x85d"]


def test_capped_lists_keep_a_negative_and_refuse_a_cap_below_one():
    from fastrank.data import QueryGroup, convert

    group = QueryGroup("q", ["p1", "p2", "p3", "n1", "n2"], [1, 1, 1, 0, 0])
    capped = convert([group], "lists", max_documents=3)
    assert capped["documents"] == [["p1", "p2", capped["documents"][0][2]]] and capped["labels"] == [[1, 1, 0]]
    assert convert([group], "lists", max_documents=1)["labels"] == [[1]]  # one document: a positive
    assert convert([group], "lists", max_documents=9)["documents"] == [group.documents]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_documents must be a positive integer or None"):
            convert([group], "lists", max_documents=bad)


def test_a_null_query_id_is_no_id(tmp_path):
    from fastrank.data import read_groups

    data = tmp_path / "g.jsonl"
    data.write_text('{"query_id": null, "query": "q", "documents": ["a"], "labels": [1]}\n')
    assert read_groups(str(data))[0].query_id == ""


def test_a_row_with_more_cells_than_the_header_is_named(tmp_path):
    """A JSONL file named .csv (its commas make extra cells) used to fail with a TypeError about sorting None."""
    from fastrank.data import read_groups

    misnamed = tmp_path / "data.csv"
    misnamed.write_text('{"query": "q", "documents": ["a", "b"], "labels": [1, 0]}\n'
                        '{"query": "r", "documents": ["c", "d", "e"], "labels": [0, 1, 0]}\n')
    with pytest.raises(DataError, match=r"data.csv row 1 \(line 2\): 7 cells, more than the header's 5 \(','-sep"):
        read_groups(str(misnamed))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("query,document,label\nq,a,1\nq,b,0,extra\n")
    with pytest.raises(DataError, match=r"row 2 \(line 3\): 4 cells, more than the header's 3 .*name it .jsonl"):
        read_groups(str(ragged))


def test_trailing_delimiters_lone_cr_lines_and_rewritten_teacher_scores(tmp_path):
    """Review fixes: a trailing tab/comma (empty cells past the header) is no extra cell; a lone CR ends a line as
    it did with splitlines; write_groups keeps teacher-score-only records unlabelled, so require_labels still holds."""
    from fastrank.data import read_corpus, read_groups, write_groups
    from fastrank.evaluation.evaluators import RerankingEvaluator

    tsv = tmp_path / "t.tsv"
    tsv.write_text("query\tdocument\tlabel\nq1\tdoc a\t1\t\nq1\tdoc b\t0\t\n")
    assert [(g.query, g.documents, g.labels) for g in read_groups(str(tsv))] == [("q1", ["doc a", "doc b"], [1.0, 0.0])]
    corpus = tmp_path / "mac.txt"
    corpus.write_bytes(b"doc one\rdoc two\r\ndoc three\r")
    assert read_corpus(corpus) == ["doc one", "doc two", "doc three"]
    distill = tmp_path / "distill.jsonl"
    distill.write_text('{"query": "q", "documents": ["a", "b"], "scores": [2.5, -1.0]}\n')
    copy = write_groups(read_groups(str(distill)), tmp_path / "copy.jsonl")
    assert "labels" not in copy.read_text() and read_groups(str(copy))[0].scores == [2.5, -1.0]
    with pytest.raises(DataError, match="'labels'"):  # the JSONL reader's own refusal: no labels
        RerankingEvaluator.from_file(copy)


def test_a_bad_json_line_is_named_with_its_column(tmp_path):
    """Lines are read one at a time: the newline must not reach the parser, which would then report every error at
    the end of a line as "column 1" (of the line after it)."""
    (tmp_path / "d.jsonl").write_text('{"query": "q", "documents": ["a"], "labels": [1]}\n{"query": "x"\n')
    with pytest.raises(DataError, match=r"d\.jsonl line 2: not valid JSON \(Expecting ',' delimiter at column 14\)"):
        read_groups(tmp_path / "d.jsonl")


def _read_from_a_pipe(path, data: bytes, reader=read_groups):
    """``reader(path)`` of a named pipe that a thread fills with ``data``: (its result or the error, finished)."""
    import os
    import threading

    os.mkfifo(path)
    out = []

    def write():
        with open(path, "wb") as f:
            f.write(data)

    def read():
        try:
            out.append(reader(path))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    threads = [threading.Thread(target=write, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    threads[1].join(10)
    return (out[0] if out else None), not threads[1].is_alive()


@pytest.mark.parametrize("name, data, expected", [
    ("d.json", b'[{"query": "q", "documents": ["a", "b"], "labels": [1, 0]}]', 2),
    ("d.json", b'{"query": "q", "documents": ["a", "b"], "labels": [1, 0]}\n', 2),
    ("d.jsonl", b'{"query": "q", "documents": ["caf\xe9"], "labels": [1]}\n', "byte 0xe9 at offset 33"),
    ("d.csv", b"query,document,label\nq,caf\xe9,1\n", "byte 0xe9 at offset 26"),
])
def test_a_named_pipe_is_read_once(tmp_path, name, data, expected):
    """A pipe (``--data <(zcat data.jsonl.gz)``) can be read once: reading it twice (to look at its first line, or to
    name a bad byte) hung."""
    result, finished = _read_from_a_pipe(tmp_path / name, data)
    assert finished, "read_groups hung on the pipe"
    if isinstance(expected, int):
        assert len(result[0].documents) == expected
    else:
        assert isinstance(result, DataError) and expected in str(result) and "not UTF-8 text" in str(result)


@pytest.mark.parametrize("name, data, expected", [
    ("c.jsonl", b'"a"\n{"text": "b", "title": "t"}\n', ["a", {"title": "t", "text": "b"}]),
    ("c.jsonl", b'{"query": "q", "documents": ["a", "b"], "labels": [1, 0]}\n', ["a", "b"]),
    ("c.json", b'[{"query": "q", "documents": ["a", "b"], "labels": [0, 1]}]', ["a", "b"]),
    ("c.txt", b"a\n\nb\n", ["a", "b"]),
    ("c.csv", b"query,document,label\nq,a,1\nq,b,0\n", ["a", "b"]),
])
def test_a_corpus_named_pipe_is_read_once(tmp_path, name, data, expected):
    """``fastrank mine --corpus`` on a pipe: its first line picks the reader, and reading the pipe again for the
    documents hung."""
    result, finished = _read_from_a_pipe(tmp_path / name, data, read_corpus)
    assert finished, "read_corpus hung on the pipe"
    assert result == expected


@pytest.mark.parametrize("name, text, bad", [("h.csv", "query,document,label\nq,a,1\nq,b,maybe\nq,c,0\n", "maybe"),
                                             ("h.tsv", "query\tdocument\tlabel\nq\ta\t1\textra\n", "4 cells")])
def test_a_bad_record_leaves_no_file_open(tmp_path, name, text, bad):
    import os

    (tmp_path / name).write_text(text)
    try:
        read_groups(tmp_path / name)
    except DataError as exc:
        kept = exc  # as a notebook keeps the last error
        opened = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                  if os.path.exists(f"/proc/self/fd/{fd}")]
    assert bad in str(kept) and str(tmp_path / name) not in opened


def test_a_damaged_parquet_file_is_named(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "p.parquet").write_text("not parquet at all\n")
    with pytest.raises(DataError, match=r"p\.parquet is not a readable Parquet file: .*magic bytes"):
        read_groups(tmp_path / "p.parquet")


def test_a_parquet_file_damaged_inside_is_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"query": [f"q{i // 5}" for i in range(20_000)],
                             "document": [f"document number {i}" for i in range(20_000)],
                             "label": [i % 5 == 0 for i in range(20_000)]}), path, row_group_size=1000)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes(2000)
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"p\.parquet is not a readable Parquet file \(after row \d+\)"):
        read_groups(path)


def test_true_and_false_are_read_only_as_flat_labels(tmp_path):
    record = {"query": "q", "documents": ["a", "b"], "scores": ["true", "0.5"]}
    with pytest.raises(DataError, match=r"each score must be a finite number \(e\.g\. 0, 1 or 0\.7\), got 'true'"):
        read_groups(_jsonl(tmp_path, [record]))


def test_the_evaluator_reads_flat_rows_from_a_pipe_once(tmp_path):
    import os
    import threading

    from fastrank.evaluation import RerankingEvaluator

    path = tmp_path / "flat.jsonl"
    os.mkfifo(path)
    rows = [{"query": "q", "document": d, "label": y} for d, y in (("a", 1), ("b", 0))]
    writer = threading.Thread(target=lambda: path.write_text("\n".join(json.dumps(r) for r in rows) + "\n"),
                              daemon=True)
    out = []
    reader = threading.Thread(target=lambda: out.append(RerankingEvaluator.from_file(path)), daemon=True)
    writer.start()
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "from_file hung on the pipe"
    (query,) = out[0].queries
    assert (query.query, query.documents, query.labels.tolist()) == ("q", ("a", "b"), [1.0, 0.0])


def test_a_query_of_invisible_characters_is_blank(tmp_path):
    """A zero-width space or a byte-order mark is no text to a tokenizer, but ``str.strip`` keeps it: such a query
    passed the blank check and was scored (and evaluated) as an empty one."""
    from fastrank.documents import is_blank

    assert is_blank("") and is_blank(" \t\u200b\ufeff\x00\u2028") and not is_blank("\u200ba") and not is_blank("é")
    data = tmp_path / "zw.jsonl"
    data.write_text('{"query": "\\u200b", "documents": ["a"], "labels": [1]}\n')
    with pytest.raises(DataError, match="'query' must be a non-empty string"):
        read_groups(str(data))
    flat = tmp_path / "zw.tsv"
    flat.write_text("query\tdocument\tlabel\n\u2060\u200b\ta\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match="'query' must be a non-empty string"):
        read_groups(str(flat))


def test_a_utf16_file_is_named_as_such(tmp_path):
    """A UTF-16 file (PowerShell's Out-File, Excel's "Unicode text") was called not UTF-8 with a latin1 iconv hint,
    which would turn it into garbage."""
    data = tmp_path / "win.tsv"
    data.write_bytes("query\tdocument\tlabel\nq\td\t1\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"win.tsv line 1 is UTF-16LE text \(it starts with a UTF-16 byte-order mark\), "
                                        r"not UTF-8; convert it, e.g. iconv -f UTF-16 -t UTF-8"):
        read_groups(str(data))
    jsonl = tmp_path / "win.jsonl"
    jsonl.write_bytes(codecs.BOM_UTF16_BE + '{"query": "q"}\n'.encode("utf-16-be"))
    with pytest.raises(DataError, match="is UTF-16BE text"):
        read_groups(str(jsonl))


def test_a_bare_carriage_return_in_a_raw_tsv_cell_is_text(tmp_path):
    """A raw TSV is read line by line at "\\n": csv ended the row at a bare "\\r" inside a cell, and the rest of the
    line failed as a row of its own, its label blamed."""
    data = tmp_path / "cr.tsv"
    data.write_bytes(b"query\tdocument\tlabel\r\nq\tline one\rline two\t1\r\nq\tsecond\t0\n\nq2\tthird\t1")
    groups = read_groups(str(data))
    assert [(g.query, g.documents, g.labels) for g in groups] == [
        ("q", ["line one\rline two", "second"], [1.0, 0.0]), ("q2", ["third"], [1.0])]
    short = tmp_path / "short.tsv"
    short.write_text("query\tdocument\tlabel\tquery_id\nq\td\t1\n")  # a missing last cell is no cell, as in csv
    assert read_groups(str(short))[0].query_id == ""
    mac = tmp_path / "mac.tsv"  # classic Mac OS line ends: "\r" alone
    mac.write_bytes(b"query\tdocument\tlabel\rq1\td1\t1\rq1\td2\t0\r")
    assert [(g.documents, g.labels) for g in read_groups(str(mac))] == [(["d1", "d2"], [1.0, 0.0])]
    wide = tmp_path / "wide.tsv"
    wide.write_text("query\tdocument\tlabel\nq\td\t1\textra\n")
    with pytest.raises(DataError, match=r"wide.tsv row 1 \(line 2\): 4 cells, more than the header's 3"):
        read_groups(str(wide))


def test_sentence_transformers_reranking_samples_read_as_the_evaluator_reads_them(tmp_path):
    """``fastrank eval`` took sentence-transformers' sample shapes; bench, export --verify-data, mine and train
    (read_groups) refused the same file."""
    from fastrank.evaluation.evaluators import RerankingEvaluator

    data = tmp_path / "st.jsonl"
    data.write_text(json.dumps({"query": "q1", "positive": ["p1"], "negative": ["n1", "n2"]}) + "\n"
                    + json.dumps({"query_id": 7, "query": "q2", "positive": ["p2", "p3"], "documents": ["d", "p3"]})
                    + "\n")
    groups = read_groups(str(data))
    assert [(g.query_id, g.query, g.documents, g.labels) for g in groups] == [
        ("", "q1", ["p1", "n1", "n2"], [1.0, 0.0, 0.0]), ("7", "q2", ["p2", "p3", "d"], [1.0, 1.0, 0.0])]
    evaluator = RerankingEvaluator.from_file(data)
    assert [(list(q.documents), q.labels.tolist()) for q in evaluator.queries] == [
        (g.documents, g.labels) for g in groups]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "positive": [1], "negative": ["n"]}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl line 1: 'positive' must be a list"):
        read_groups(str(bad))


def test_a_flag_column_named_positive_is_a_flat_column_not_a_sample(tmp_path):
    """Reading sentence-transformers' samples took any record with a 'positive' key for one: a CSV whose 0/1
    relevance column is called 'positive' trained on the flags as documents."""
    from fastrank.data import dedup_key

    flags = tmp_path / "flags.csv"
    flags.write_text("query,document,positive\nwhat is x,x is a letter,1\nwhat is x,y is a letter,0\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['label'\]"):
        read_groups(str(flags))
    assert dedup_key("The tower is 10³ m") != dedup_key("The tower is 103 m")  # NFC: compatibility forms stay apart
    assert dedup_key("Cafe\u0301") == dedup_key("café")


def test_a_lone_surrogate_in_a_data_file_is_named_where_it_is(tmp_path):
    """A JSON '\\ud800' escape reads as a lone surrogate: training failed inside pyarrow and evaluation inside the
    tokenizer, with errors that named no line."""
    from fastrank.evaluation.evaluators import RerankingEvaluator

    for record, where in (('{"query": "q", "documents": ["ok", "bad \\ud800"], "labels": [1, 0]}', "document 1"),
                          ('{"query": "q \\udc80", "documents": ["ok"], "labels": [1]}', "'query'"),
                          ('{"query": "q", "documents": [{"title": "t\\ud800", "text": "x"}], "labels": [1]}',
                           "document 0")):
        data = tmp_path / "s.jsonl"
        data.write_text(record + "\n")
        with pytest.raises(DataError, match=rf"s.jsonl line 1: {where} is not valid Unicode text \(lone surrogate"):
            read_groups(str(data))
        with pytest.raises(DataError, match="is not valid Unicode text"):
            RerankingEvaluator.from_file(data)
