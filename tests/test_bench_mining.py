"""The context rewriting of bench/mining.py's context variants (issue #3): each sentence is scored as
"<its article's lead> [SEP] <sentence>", the lead itself and unknown sentences as they are."""

from __future__ import annotations

from bench.mining import _RewritingReranker, _with_lead
from fastrank.data import dedup_key

LEAD = "BMC Software, Inc. is an American company."
LEADS = {dedup_key(d): LEAD for d in (LEAD, "It has 6,000 employees .")}


def test_with_lead_prefixes_the_article_lead():
    assert _with_lead(LEADS, "It has 6,000 employees .") == f"{LEAD} [SEP] It has 6,000 employees ."
    # twins differing in case/whitespace find the same article; the lead and unknown sentences stay as they are
    assert _with_lead(LEADS, "it  has 6,000 employees .") == f"{LEAD} [SEP] it  has 6,000 employees ."
    assert _with_lead(LEADS, LEAD.lower()) == LEAD.lower()
    assert _with_lead(LEADS, "An unrelated sentence.") == "An unrelated sentence."


class _Recorder:
    def __init__(self):
        self.seen = []

    def predict(self, pairs, batch_size=32, show_progress_bar=None, **kwargs):
        self.seen.append(list(pairs))
        return [float(len(d)) for _, d in pairs]


def test_rewriting_reranker_scores_rewritten_documents():
    inner = _Recorder()
    model = _RewritingReranker(inner, lambda pairs: [_with_lead(LEADS, d) for _, d in pairs])
    scores = model.predict([("q1", "It has 6,000 employees ."), ("q2", "An unrelated sentence.")])
    assert inner.seen == [[("q1", f"{LEAD} [SEP] It has 6,000 employees ."), ("q2", "An unrelated sentence.")]]
    assert scores == [float(len(LEAD) + 7 + len("It has 6,000 employees .")), float(len("An unrelated sentence."))]
    assert model.predict([]) == [] and inner.seen[-1] == []
