"""``PairEncoder.encode`` tokenizes a long text from a prefix: its ids must equal the whole text's, for every kind of
tokenizer (WordPiece, byte-level BPE, Metaspace unigram) and every text that could trip a cut (space runs, newlines
before a space, no spaces at all, combining accents, a query longer than the room, a text just over the limit)."""

from __future__ import annotations

import numpy as np
import pytest

from fastrank.batching import PREFIX_CHARS_PER_TOKEN, PairEncoder, _to_encoded, splits_at_spaces

WORDS = ("the cross encoder reads query and document together naïve café résumé co-operate e.g. U.S.A. 3.14 "
         "日本語のテキスト 😀 don't l'été").split()


def _texts(seed: int, n: int, chars: int) -> list[str]:
    """``n`` texts of about ``chars`` characters, mixing words with the separators a cut may land next to."""
    rng = np.random.default_rng(seed)
    seps = [" ", " ", " ", "  ", "\n", "\n ", " \n ", "\t", " \t ", "   ", ", ", ". ", " - "]
    out = []
    for _ in range(n):
        parts, size = [], 0
        while size < chars:
            word = str(rng.choice(WORDS))
            if rng.random() < 0.02:
                word = word * int(rng.integers(20, 200))  # a long word
            if rng.random() < 0.01:
                word += "\u0301"  # a combining accent
            part = word + str(rng.choice(seps))
            parts.append(part)
            size += len(part)
        out.append("".join(parts))
    return out


def _wordpiece():
    from tokenizers import Tokenizer

    from conftest import _tokenizer_source

    return Tokenizer.from_file(f"{_tokenizer_source()}/tokenizer.json")


def _trained(kind: str):
    """A small tokenizer of ``kind`` trained here on generated text (no download)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    corpus = _texts(0, 200, 400)
    if kind == "byte-level bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(corpus, trainer)
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                          ("<s>", tok.token_to_id("<s>")))
        return tok
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>", "<unk>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return tok


@pytest.mark.parametrize("kind", ["wordpiece", "byte-level bpe", "metaspace unigram"])
@pytest.mark.parametrize("max_length", [32, 128])
def test_long_texts_tokenize_from_a_prefix_to_the_whole_texts_ids(kind, max_length, monkeypatch):
    tokenizer = _wordpiece() if kind == "wordpiece" else _trained(kind)
    encoder = PairEncoder(tokenizer, max_length)
    assert splits_at_spaces(encoder.tokenizer)
    limit = max_length * PREFIX_CHARS_PER_TOKEN
    docs = _texts(1, 40, limit * 3) + [
        "word " * (limit // 2),  # just over the limit
        "x" * (limit * 3),  # no space: tokenized whole
        "日本語のテキスト" * limit,  # no space either
        "   " + " " * (limit * 3) + "late words " * 50,  # spaces first: every prefix too short
        "a\n" * (limit * 2) + " b" * 10,  # newlines before the spaces
    ]
    queries = ["what does the cross encoder read", " ".join(_texts(2, 1, limit * 2)), "q"]
    pairs = [(queries[i % 3], d) for i, d in enumerate(docs)]
    singles = list(docs)

    recording = _Recording(encoder.tokenizer)
    monkeypatch.setattr(encoder, "tokenizer", recording)
    for items, share in ((pairs, 0.9), (singles, 0.6)):  # a pair whose query is longer than its prefix: whole
        recording.chars = 0
        got = encoder.encode(items)
        want = _to_encoded(recording.inner.encode_batch(items))
        assert [x.tolist() for x in got.input_ids] == [x.tolist() for x in want.input_ids]
        assert [x.tolist() for x in got.token_type_ids] == [x.tolist() for x in want.token_type_ids]
        assert recording.chars < share * sum(len(d) for d in docs)  # long documents were tokenized from prefixes


class _Recording:
    """A tokenizer that counts the characters of documents (or single texts) it is asked to tokenize."""

    def __init__(self, inner) -> None:
        self.inner, self.chars = inner, 0

    def encode_batch(self, items, *args, **kwargs):
        self.chars += sum(len(x if isinstance(x, str) else x[1]) for x in items)
        return self.inner.encode_batch(items, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("item, message", [
    ([["not", "a", "str"], "word " * 2000], "item 0: query must be a str, got list"),
    (("a query", "word " * 2000 + "\udc80"), "item 0: document is not valid Unicode"),
])
def test_a_long_document_beside_a_bad_text_gets_the_usual_error(item, message):
    encoder = PairEncoder(_wordpiece(), 32)
    with pytest.raises(TypeError, match=message):
        encoder.encode([item])


@pytest.mark.parametrize("document, message", [
    ({"title": "caf\udce9", "text": "a text"}, r"item 0: document title is not valid Unicode text \(lone surrogate "
                                               r"'\\udce9' at character 3"),
    ({"title": "t", "text": "caf\udce9"}, r"item 0: document text is not valid Unicode text \(lone surrogate "
                                          r"'\\udce9' at character 3"),
    ("caf\udce9", r"item 0: document is not valid Unicode text \(lone surrogate '\\udce9' at character 3"),
])
def test_bad_text_in_a_titled_document_is_named_in_both_modes(document, message):
    """A bad title gave tokenizers' bare TypeError in windows mode; truncate mode called it "document" and counted
    its position in "<title> [SEP] <text>"."""
    encoder = PairEncoder(_wordpiece(), 32)
    with pytest.raises(TypeError, match=message):
        encoder.encode([("a query", document)])
    with pytest.raises(TypeError, match=message):
        encoder.encode_windows([("a query", document)], 4)


def test_pre_tokenizers_that_do_not_split_at_spaces_get_no_prefixes():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    def with_pre_tokenizer(pre):
        tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
        if pre is not None:
            tok.pre_tokenizer = pre
        return tok

    cases = {None: False, pre_tokenizers.ByteLevel(use_regex=False): False,
             pre_tokenizers.Metaspace(split=False): False, pre_tokenizers.Punctuation(): False,
             pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\d+"), "isolated"),
                                      pre_tokenizers.ByteLevel(use_regex=False)]): False,
             pre_tokenizers.ByteLevel(): True, pre_tokenizers.Metaspace(): True,
             pre_tokenizers.BertPreTokenizer(): True,
             pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits()]): True}
    assert {repr(k): splits_at_spaces(with_pre_tokenizer(k)) for k in cases} == {repr(k): v for k, v in cases.items()}


def _wordpiece_letters(pre, normalizer=None):
    """A WordPiece over single letters (words of more than 100 characters are [UNK])."""
    import string

    from tokenizers import Tokenizer, models, processors

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "▁": 3, "##▁": 4}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab["##" + c] = len(vocab)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.pre_tokenizer = pre
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return tok


def _cases_that_defeat_a_cut_at_a_space():
    """Tokenizers where a space is no token boundary after all (found by a fuzz test: each gave other ids than the
    whole text before ``splits_at_spaces`` looked past the pre-tokenizer's type)."""
    from tokenizers import AddedToken, normalizers, pre_tokenizers

    phrase = " ".join(("abcdefghijklmnopqrstuvwxyz" * 4)[:80])
    with_phrase = _wordpiece()
    with_phrase.add_tokens([AddedToken(phrase)])  # an added token holding spaces, across the cut
    lines = "\n".join([("ab " * 40).strip()] * 200)  # one 119-character word a line where spaces do not split
    return [
        ("added token with spaces", with_phrase, "information " * 20 + phrase + " " + "more words " * 200, 32),
        ("metaspace without split first", _wordpiece_letters(pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(split=False), pre_tokenizers.WhitespaceSplit()])), lines, 64),
        ("normalizer replacing spaces", _wordpiece_letters(
            pre_tokenizers.BertPreTokenizer(), normalizers.Replace(" ", "▁")), lines, 64),
    ]


@pytest.mark.parametrize("name, tokenizer, text, max_length", _cases_that_defeat_a_cut_at_a_space(),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_tokenizers_whose_spaces_are_no_boundary_tokenize_the_whole_text(name, tokenizer, text, max_length):
    encoder = PairEncoder(tokenizer, max_length)
    assert not splits_at_spaces(encoder.tokenizer)
    got = encoder.encode([text]).input_ids[0].tolist()
    assert got == _to_encoded(encoder.tokenizer.encode_batch([text])).input_ids[0].tolist()


def test_a_text_under_the_ratio_or_without_spaces_is_tokenized_whole(monkeypatch):
    """Below PREFIX_MIN_RATIO x the prefix, tokenizing the prefix twice (to count, then to encode) cost more than the
    whole text (1.9x at 6,200 characters for max_length 512); a text whose prefixes never hold enough tokens (long
    [UNK] words) was counted at 4x, 16x, ... before going whole (2.15x)."""
    from fastrank.batching import PREFIX_MIN_RATIO

    encoder = PairEncoder(_wordpiece(), 128)
    limit = (128 - 2) * PREFIX_CHARS_PER_TOKEN
    recording, counting = _Recording(encoder.tokenizer), _Recording(encoder._plain_tokenizer())
    monkeypatch.setattr(encoder, "tokenizer", recording)
    encoder._lazy["_plain"] = counting  # the tokenizer that counts a prefix's tokens
    short = ("word " * limit)[: int(limit * PREFIX_MIN_RATIO) - 10]
    unknown = " ".join(["Zq9x" * 40] * 400)  # one [UNK] per 160 characters: no prefix holds enough tokens
    for text, counted in ((short, 0), (unknown, limit)):
        recording.chars = counting.chars = 0
        encoder.encode([text])
        assert recording.chars == len(text)  # tokenized whole, once
        assert counting.chars <= counted  # the unknown words: one prefix counted, then the whole text


@pytest.mark.parametrize("max_length", [32, 512])
def test_chinese_text_tokenizes_from_a_prefix_cut_after_an_ideograph(max_length, monkeypatch):
    """Chinese text has no spaces, so a long document was tokenized whole (30-45x slower than English of the same
    token count); BERT's normalizer makes each ideograph a word, so a prefix may end after one. Japanese kana and
    Korean stay inside their words: only ideographs cut."""
    from fastrank.batching import splits_at_ideographs

    encoder = PairEncoder(_wordpiece(), max_length)
    assert splits_at_ideographs(encoder.tokenizer)
    limit = max_length * PREFIX_CHARS_PER_TOKEN
    chinese = "冰川洞穴是在冰川冰内形成的洞穴，通常由融水流过冰川形成。" * (limit // 5)
    docs = [chinese, "日本語のテキストです。" * limit, "한국어 텍스트" * limit, "x" + chinese, chinese[:7] + "ab" * limit]
    pairs = [("冰川洞穴是怎样形成的", d) for d in docs]
    recording = _Recording(encoder.tokenizer)
    monkeypatch.setattr(encoder, "tokenizer", recording)
    got = encoder.encode(pairs)
    want = _to_encoded(recording.inner.encode_batch(pairs))
    assert [x.tolist() for x in got.input_ids] == [x.tolist() for x in want.input_ids]
    recording.chars = 0
    encoder.encode(pairs[:1])
    assert recording.chars < len(chinese) / 3  # a prefix, not the whole text
    for kind in ("byte-level bpe", "metaspace unigram"):  # no BERT normalizer: no ideograph cuts
        assert not splits_at_ideographs(_trained(kind))
    from fastrank.batching import _is_ideograph

    # tokenizers' own table: U+2B820-2B91F are not spaced out by its BertNormalizer (transformers' Python one differs)
    normalized = encoder.tokenizer.normalizer.normalize_str
    for char in ("\u4e2d", "\U0002B820", "\U0002B920", "\u3042"):
        assert _is_ideograph(char) == (normalized(char) == f" {char} "), char
