"""fastrank.losses: hand-computed values, padding invariance, parity with sentence-transformers, gradient caching,
bf16 autocast and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from fastrank.errors import DataError
from fastrank.losses import (
    LOSSES,
    BinaryCrossEntropyLoss,
    CachedMultipleNegativesRankingLoss,
    CrossEntropyLoss,
    LambdaLoss,
    ListMLELoss,
    ListNetLoss,
    LossConfigError,
    MarginMSELoss,
    MSELoss,
    MultipleNegativesRankingLoss,
    PListMLELoss,
    RankNetLoss,
    get_loss,
)

SCHEMES = ["ndcg_loss2pp", "ndcg_loss2", "lambdarank", "ndcg_loss1", "none"]


class TableScorer(torch.nn.Module):
    """Stand-in model with a learnable logit row per (query, document) from a table, so losses see known logits."""

    def __init__(self, table: dict[tuple[str, str], float | list[float]], num_labels: int = 1) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.index = {pair: i for i, pair in enumerate(table)}
        self.values = torch.nn.Parameter(torch.tensor(list(table.values())).view(len(table), num_labels))
        self.seen: list[tuple[str, str]] = []
        self.calls: list[int] = []

    def score(self, queries, documents) -> torch.Tensor:
        self.seen.extend(zip(queries, documents))
        self.calls.append(len(queries))
        return self.values[[self.index[pair] for pair in zip(queries, documents)]]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def log_softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    norm = top + math.log(sum(math.exp(x - top) for x in xs))
    return [x - norm for x in xs]


def list_scorer(scores: list[list[float]]) -> tuple[TableScorer, list[str], list[list[str]]]:
    queries = [f"q{i}" for i in range(len(scores))]
    docs = [[f"q{i}-d{j}" for j in range(len(row))] for i, row in enumerate(scores)]
    table = {(q, d): s for q, row_d, row_s in zip(queries, docs, scores) for d, s in zip(row_d, row_s)}
    return TableScorer(table), queries, docs


# Lists of different lengths (2, 4, 3), no tied logits.
LIST_SCORES = [[0.3, -0.8], [1.2, -0.4, 0.7, 2.1], [-1.5, 0.2, 0.9]]
LIST_LABELS = [[1.0, 0.0], [2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.5]]
UNTIED_LABELS = [[1.0, 0.0], [2.0, 0.0, 1.0, 0.5], [0.0, 1.0, 0.5]]  # one label order each: ListMLE ties are random


# ---------------------------------------------------------------------------------------------- hand-computed
def test_bce_matches_formula_with_and_without_pos_weight() -> None:
    logits, labels = [0.5, -1.0, 2.0], [1.0, 0.0, 0.3]
    model = TableScorer({("q", f"d{i}"): x for i, x in enumerate(logits)})
    inputs = [["q"] * 3, ["d0", "d1", "d2"]]
    for weight in (None, 2.0):
        w = weight or 1.0
        expected = sum(-(w * y * math.log(sigmoid(x)) + (1 - y) * math.log(1 - sigmoid(x)))
                       for x, y in zip(logits, labels)) / 3
        got = BinaryCrossEntropyLoss(model, pos_weight=weight)(inputs, torch.tensor(labels))
        assert got.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(LossConfigError, match=r"activation_fn must be a name or callable \(the second argument, as "
                                              r"in sentence-transformers; give a positive weight as pos_weight=\)"):
        BinaryCrossEntropyLoss(model, 2.0)  # fastrank's order was (model, pos_weight, activation_fn)


def test_cross_entropy_matches_formula_for_class_ids_and_soft_targets() -> None:
    rows = [[0.2, 1.0, -0.5], [1.5, -0.3, 0.1]]
    model = TableScorer({("q", "a"): rows[0], ("q", "b"): rows[1]}, num_labels=3)
    inputs = [["q", "q"], ["a", "b"]]
    expected = -(log_softmax(rows[0])[2] + log_softmax(rows[1])[0]) / 2
    assert CrossEntropyLoss(model)(inputs, torch.tensor([2.0, 0.0])).item() == pytest.approx(expected, rel=1e-6)
    soft = [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]
    expected_soft = -sum(p * lp for r, t in zip(rows, soft) for p, lp in zip(t, log_softmax(r))) / 2
    assert CrossEntropyLoss(model)(inputs, torch.tensor(soft)).item() == pytest.approx(expected_soft, rel=1e-6)


def test_mse_matches_formula() -> None:
    model = TableScorer({("q", "a"): 0.5, ("q", "b"): -2.0})
    got = MSELoss(model)([["q", "q"], ["a", "b"]], [1.5, -1.0])
    assert got.item() == pytest.approx(((0.5 - 1.5) ** 2 + (-2.0 + 1.0) ** 2) / 2, rel=1e-6)


def test_margin_mse_matches_formula_in_every_label_layout() -> None:
    s = {("q0", "p"): 1.0, ("q0", "n1"): -0.5, ("q0", "n2"): 0.25, ("q1", "p"): 0.0, ("q1", "n1"): 0.5,
         ("q1", "n2"): -1.0}
    model = TableScorer(s)
    teacher = {("q0", "p"): 3.0, ("q0", "n1"): 0.0, ("q0", "n2"): 1.0, ("q1", "p"): 2.0, ("q1", "n1"): 2.5,
               ("q1", "n2"): 0.0}
    inputs = [["q0", "q1"], ["p", "p"], ["n1", "n1"], ["n2", "n2"]]
    errors = [((s[(q, "p")] - s[(q, n)]) - (teacher[(q, "p")] - teacher[(q, n)])) ** 2
              for q in ("q0", "q1") for n in ("n1", "n2")]
    expected = sum(errors) / 4
    margins = [[teacher[(q, "p")] - teacher[(q, n)] for n in ("n1", "n2")] for q in ("q0", "q1")]
    scores = [[teacher[(q, d)] for d in ("p", "n1", "n2")] for q in ("q0", "q1")]
    loss = MarginMSELoss(model)
    assert loss(inputs, torch.tensor(margins)).item() == pytest.approx(expected, rel=1e-6)
    assert loss(inputs, scores).item() == pytest.approx(expected, rel=1e-6)
    assert loss([inputs[0], [["p", "n1", "n2"]] * 2], scores).item() == pytest.approx(expected, rel=1e-6)
    one_negative = ((s[("q0", "p")] - s[("q0", "n1")]) - 3.0) ** 2 + ((s[("q1", "p")] - s[("q1", "n1")]) + 0.5) ** 2
    got = loss(inputs[:3], torch.tensor([3.0, -0.5]))
    assert got.item() == pytest.approx(one_negative / 2, rel=1e-6)


def _mnrl_expected(s: dict[tuple[str, str], float], queries: list[str], positives: list[str], scale: float) -> float:
    """With all in-batch negatives, every row's candidates are all documents of the batch."""
    docs = sorted({d for (_, d) in s})
    total = 0.0
    for q, p in zip(queries, positives):
        logits = [scale * sigmoid(s[(q, d)]) for d in docs]
        total -= log_softmax(logits)[docs.index(p)]
    return total / len(queries)


MNRL_QUERIES, MNRL_POS, MNRL_NEG = ["qa", "qb", "qc"], ["pa", "pb", "pc"], ["na", "nb", "nc"]


def _mnrl_table() -> dict[tuple[str, str], float]:
    gen = torch.Generator().manual_seed(3)
    docs = MNRL_POS + MNRL_NEG
    return {(q, d): float(v) for q in MNRL_QUERIES for d, v in zip(docs, torch.randn(len(docs), generator=gen))}


@pytest.mark.parametrize("cls", [MultipleNegativesRankingLoss, CachedMultipleNegativesRankingLoss])
def test_mnrl_matches_formula(cls) -> None:
    table = _mnrl_table()
    options = {"mini_batch_size": 4} if cls is CachedMultipleNegativesRankingLoss else {}
    loss = cls(TableScorer(table), num_negatives=None, scale=7.0, **options)
    got = loss([MNRL_QUERIES, MNRL_POS, MNRL_NEG])
    assert got.item() == pytest.approx(_mnrl_expected(table, MNRL_QUERIES, MNRL_POS, 7.0), rel=1e-6)


def test_mnrl_samples_in_batch_negatives_from_other_rows_only() -> None:
    model = TableScorer(_mnrl_table())
    MultipleNegativesRankingLoss(model, num_negatives=2)([MNRL_QUERIES, MNRL_POS, MNRL_NEG])
    for q, p, n in zip(MNRL_QUERIES, MNRL_POS, MNRL_NEG):
        scored = [d for (query, d) in model.seen if query == q]
        assert len(scored) == 1 + 2 + 1 and scored[0] == p and scored[-1] == n
        assert not {p, n} & set(scored[1:3])


def test_listnet_matches_formula() -> None:
    model, queries, docs = list_scorer(LIST_SCORES)
    expected = sum(-sum(p * lp for p, lp in zip(map(math.exp, log_softmax(y)), log_softmax(s)))
                   for s, y in zip(LIST_SCORES, LIST_LABELS)) / 3
    assert ListNetLoss(model)([queries, docs], LIST_LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_listnet_label_scale_sharpens_the_target() -> None:
    model, queries, docs = list_scorer(LIST_SCORES)
    expected = sum(-sum(p * lp for p, lp in zip(map(math.exp, log_softmax([10 * v for v in y])), log_softmax(s)))
                   for s, y in zip(LIST_SCORES, LIST_LABELS)) / 3
    loss = ListNetLoss(model, label_scale=10)([queries, docs], LIST_LABELS).item()
    assert loss == pytest.approx(expected, rel=1e-6)
    assert loss != pytest.approx(ListNetLoss(model)([queries, docs], LIST_LABELS).item(), rel=1e-3)
    with pytest.raises(ValueError, match="label_scale must be a positive number"):
        ListNetLoss(model, label_scale=0)


def _plackett_luce(scores: list[float], weights: list[float]) -> float:
    """Weighted Plackett-Luce negative log-likelihood of the given order."""
    return -sum(w * (s - math.log(sum(math.exp(x) for x in scores[r:])))
                for r, (s, w) in enumerate(zip(scores, weights)))


@pytest.mark.parametrize("respect_input_order", [True, False])
def test_listmle_and_plistmle_match_formula(respect_input_order: bool) -> None:
    model, queries, docs = list_scorer(LIST_SCORES)
    ordered = [s if respect_input_order else [x for _, x in sorted(zip(y, s), key=lambda t: -t[0])]
               for s, y in zip(LIST_SCORES, UNTIED_LABELS)]
    plain = sum(_plackett_luce(s, [1.0] * len(s)) for s in ordered) / 3
    position = [[2.0 ** (len(s) - r) - 1 for r in range(1, len(s) + 1)] for s in ordered]
    weighted = sum(_plackett_luce(s, [w / sum(ws) for w in ws]) for s, ws in zip(ordered, position)) / 3
    options = {"respect_input_order": respect_input_order}
    assert ListMLELoss(model, **options)([queries, docs], UNTIED_LABELS).item() == pytest.approx(plain, rel=1e-6)
    assert PListMLELoss(model, **options)([queries, docs], UNTIED_LABELS).item() == pytest.approx(weighted, rel=1e-6)


def test_listmle_orders_equal_labels_at_random_not_by_file_order() -> None:
    """[pos, negA, negB] and [pos, negB, negA] are the same list: each call draws the order of the tied negatives
    afresh, so both inputs give the same two loss values (a stable sort gave each its own: 1.5126 vs 1.4578 on
    WikiQA-like scores), and the file order of negatives is nothing the model can learn."""
    for cls in (ListMLELoss, PListMLELoss):
        model, queries, docs = list_scorer([[0.3, -0.8, 0.5]])
        swapped_model, _, swapped_docs = list_scorer([[0.3, 0.5, -0.8]])
        torch.manual_seed(0)
        seen = {round(cls(model)([queries, docs], [[1.0, 0.0, 0.0]]).item(), 6) for _ in range(40)}
        swapped = {round(cls(swapped_model)([queries, swapped_docs], [[1.0, 0.0, 0.0]]).item(), 6) for _ in range(40)}
        assert len(seen) == 2 and seen == swapped


def test_listmle_default_ranks_by_labels_not_by_document_order() -> None:
    """fastrank.data keeps documents in file order, so the default must read the order from the labels."""
    model, queries, docs = list_scorer(LIST_SCORES)
    labels = [[1.0, 0.0], [3.0, 0.0, 2.0, 1.0], [0.0, 2.0, 1.0]]  # no ties: the label order is unique
    reversed_docs, reversed_labels = [d[::-1] for d in docs], [y[::-1] for y in labels]
    for cls in (ListMLELoss, PListMLELoss):
        forward = cls(model)([queries, docs], labels)
        backward = cls(model)([queries, reversed_docs], reversed_labels)
        assert forward.item() == pytest.approx(backward.item(), rel=1e-6)


def _lambda_reference(scores, labels, scheme, k=None, sigma=1.0, mu=10.0) -> tuple[float, int]:
    """Summed pair losses and pair count of one query, written from the LambdaLoss paper's definitions."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    s, y = [scores[i] for i in order], [labels[i] for i in order]
    k = k or n
    disc = lambda rank: math.log2(1 + rank)  # noqa: E731  (rank is 1-based)
    ideal = sorted(labels, reverse=True)[:k]
    max_dcg = max(sum((2 ** max(v, 0) - 1) / disc(r + 1) for r, v in enumerate(ideal)), 1e-10)
    gain = [(2 ** max(v, 0) - 1) / max_dcg for v in y]
    total, count = 0.0, 0
    for a in range(n):
        for b in range(n):
            if (scheme != "ndcg_loss1" and not y[a] > y[b]) or (a >= k and b >= k):
                continue
            dg, d = abs(gain[a] - gain[b]), abs(a - b)
            lambdarank = abs(1 / disc(a + 1) - 1 / disc(b + 1)) * dg
            ndcg2 = abs(1 / disc(d) - 1 / disc(d + 1)) * dg if d else 0.0
            weight = {"none": 1.0, "ndcg_loss1": gain[a] / disc(a + 1), "lambdarank": lambdarank,
                      "ndcg_loss2": ndcg2, "ndcg_loss2pp": mu * ndcg2 + lambdarank}[scheme]
            total -= weight * math.log2(sigmoid(sigma * (s[a] - s[b])))
            count += 1
    return total, count


@pytest.mark.parametrize("k", [None, 2])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_lambda_loss_matches_paper_formulas(scheme: str, k: int | None) -> None:
    model, queries, docs = list_scorer(LIST_SCORES)
    parts = [_lambda_reference(s, y, scheme, k=k, sigma=1.5) for s, y in zip(LIST_SCORES, LIST_LABELS)]
    expected = sum(t for t, _ in parts) / sum(c for _, c in parts)
    got = LambdaLoss(model, weighting_scheme=scheme, k=k, sigma=1.5)([queries, docs], LIST_LABELS)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_ranknet_matches_formula() -> None:
    model, queries, docs = list_scorer(LIST_SCORES)
    pairs = [(s[i] - s[j]) for s, y in zip(LIST_SCORES, LIST_LABELS)
             for i in range(len(s)) for j in range(len(s)) if y[i] > y[j]]
    expected = sum(-math.log(sigmoid(d)) for d in pairs) / len(pairs)
    got = RankNetLoss(model, reduction_log="natural")([queries, docs], LIST_LABELS)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_mini_batch_size_sets_the_pairs_per_forward_pass() -> None:
    model, queries, docs = list_scorer(LIST_SCORES)  # 9 pairs in 3 rows
    for size, calls in ((None, [3, 3, 3]), (2, [2, 2, 2, 2, 1]), (0, [9]), (-1, [9])):
        model.calls.clear()
        ListNetLoss(model, mini_batch_size=size)([queries, docs], LIST_LABELS)
        assert model.calls == calls, size
    model = TableScorer(_mnrl_table())
    CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=4)(
        [MNRL_QUERIES, MNRL_POS, MNRL_NEG]).backward()
    assert model.calls == [4, 4, 4, 4, 2] * 2  # 18 pairs, scored without and then with a graph


# ---------------------------------------------------------------------------------------------- padding
def _pairs_counted(labels: list[float], scheme: str) -> int:
    return len(labels) ** 2 if scheme == "ndcg_loss1" else sum(a > b for a in labels for b in labels)


PADDING_CASES = {
    "listnet": (lambda m: ListNetLoss(m), lambda y: 1),
    "listmle": (lambda m: ListMLELoss(m), lambda y: 1),
    "plistmle": (lambda m: PListMLELoss(m), lambda y: 1),
    "lambda": (lambda m: LambdaLoss(m), lambda y: _pairs_counted(y, "ndcg_loss2pp")),
    "lambda-ndcg1": (lambda m: LambdaLoss(m, weighting_scheme="ndcg_loss1"), lambda y: _pairs_counted(y, "ndcg_loss1")),
    "ranknet": (lambda m: RankNetLoss(m), lambda y: _pairs_counted(y, "none")),
    "margin-mse": (lambda m: MarginMSELoss(m), lambda y: len(y) - 1),
}


@pytest.mark.parametrize("case", PADDING_CASES)
def test_padded_batch_equals_weighted_mean_of_single_queries(case: str) -> None:
    """ListNet/ListMLE/PListMLE average queries; LambdaLoss/RankNet average pairs; MarginMSE averages margins."""
    build, weight_of = PADDING_CASES[case]
    model, queries, docs = list_scorer(LIST_SCORES)
    labels = UNTIED_LABELS if "mle" in case else LIST_LABELS  # ListMLE draws a tie order per call
    loss = build(model)
    batch = loss([queries, docs], labels)
    batch.backward()
    batch_grad = model.values.grad.clone()
    model.values.grad = None
    weights = [weight_of(y) for y in labels]
    singles = [loss([[q], [d]], [y]) for q, d, y in zip(queries, docs, labels)]
    combined = sum(w * single for w, single in zip(weights, singles)) / sum(weights)
    combined.backward()
    assert batch.item() == pytest.approx(combined.item(), abs=1e-6)
    assert torch.isfinite(batch_grad).all()
    torch.testing.assert_close(batch_grad, model.values.grad, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- sentence-transformers
@pytest.fixture(scope="module")
def models(tiny_model_dir):
    """fastrank and sentence-transformers cross-encoders over the same weights, in eval mode."""
    import fastrank
    from sentence_transformers import CrossEncoder as STCrossEncoder

    return (fastrank.CrossEncoder(tiny_model_dir, device="cpu").eval(),
            STCrossEncoder(str(tiny_model_dir), device="cpu").eval())


QUERIES = ["what do pandas eat", "capital of france", "how tall is everest", "who wrote hamlet"]
POSITIVES = ["Pandas eat bamboo almost exclusively.", "Paris is the capital of France.",
             "Everest is 8,849 metres tall.", "Hamlet was written by Shakespeare."]
NEGATIVES = ["Pandas are bears.", "France borders Spain.", "K2 is in Pakistan.", "Hamlet is a small village."]
NEGATIVES_2 = ["Bamboo grows fast.", "Lyon is in France.", "Everest base camp is busy.", "Macbeth is a play."]
DOC_LISTS = [[POSITIVES[0], NEGATIVES[0]], [POSITIVES[1], NEGATIVES[1], NEGATIVES_2[1], POSITIVES[3]],
             [NEGATIVES[2], POSITIVES[2], NEGATIVES_2[2]]]
DOC_LABELS = [[1.0, 0.0], [2.0, 0.0, 1.0, 0.5], [0.0, 1.0, 0.3]]


def test_same_weights_give_same_logits(models) -> None:
    fr, st = models
    ours = fr.score(QUERIES, POSITIVES).view(-1)
    theirs = st(st.preprocess(list(zip(QUERIES, POSITIVES))))["scores"].view(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert ours.std() > 0.05  # distinct scores, so the ranking losses below compare something


def _st_cases():
    """name -> (fastrank loss factory, sentence-transformers loss factory, inputs, labels)."""
    from sentence_transformers.cross_encoder import losses as st

    st_schemes = {"ndcg_loss2pp": st.NDCGLoss2PPScheme, "ndcg_loss2": st.NDCGLoss2Scheme,
                  "lambdarank": st.LambdaRankScheme, "ndcg_loss1": st.NDCGLoss1Scheme, "none": st.NoWeightingScheme}
    pairs = [QUERIES * 2, POSITIVES + NEGATIVES]
    binary = torch.tensor([1.0] * 4 + [0.0] * 4)
    teacher = torch.tensor([2.0, 1.5, -0.5, 3.0, -1.0, 0.0, 0.5, -2.0])
    triplets = [QUERIES, POSITIVES, NEGATIVES]
    ntuple_scores = [[3.0, 1.0, 0.5], [2.0, 2.5, -1.0], [0.0, -1.0, 1.0], [1.0, 0.0, 0.0]]
    lists = [QUERIES[:3], DOC_LISTS]
    cases = {
        "bce": (lambda m: BinaryCrossEntropyLoss(m), lambda m: st.BinaryCrossEntropyLoss(m), pairs, binary),
        "bce-pos-weight": (lambda m: BinaryCrossEntropyLoss(m, pos_weight=3.0),
                           lambda m: st.BinaryCrossEntropyLoss(m, pos_weight=torch.tensor(3.0)), pairs, binary),
        "mse": (lambda m: MSELoss(m), lambda m: st.MSELoss(m), pairs, teacher),
        # sentence-transformers' argument order and the keywords it passes to the torch loss (a TypeError before)
        "bce-st-order-sum": (lambda m: BinaryCrossEntropyLoss(m, torch.nn.Identity(), 3.0, reduction="sum"),
                             lambda m: st.BinaryCrossEntropyLoss(m, torch.nn.Identity(), torch.tensor(3.0),
                                                                 reduction="sum"), pairs, binary),
        "bce-weight": (lambda m: BinaryCrossEntropyLoss(m, weight=torch.arange(1.0, 9.0)),
                       lambda m: st.BinaryCrossEntropyLoss(m, weight=torch.arange(1.0, 9.0)), pairs, binary),
        "mse-sum": (lambda m: MSELoss(m, reduction="sum"), lambda m: st.MSELoss(m, reduction="sum"), pairs, teacher),
        "margin-mse-sum": (lambda m: MarginMSELoss(m, reduction="sum"), lambda m: st.MarginMSELoss(m, reduction="sum"),
                           [QUERIES, POSITIVES, NEGATIVES, NEGATIVES_2], torch.tensor(ntuple_scores)),
        # the second argument is lambda_weight there: None is plain ListMLE (fastrank read it as rank_discount_fn)
        "plistmle-positional-none": (lambda m: PListMLELoss(m, None, respect_input_order=True),
                                     lambda m: st.PListMLELoss(m, None), lists, DOC_LABELS),
        "margin-mse": (lambda m: MarginMSELoss(m), lambda m: st.MarginMSELoss(m), triplets,
                       torch.tensor([1.0, -0.5, 2.0, 0.0])),
        "margin-mse-scores": (lambda m: MarginMSELoss(m), lambda m: st.MarginMSELoss(m),
                              [QUERIES, POSITIVES, NEGATIVES, NEGATIVES_2], torch.tensor(ntuple_scores)),
        "listnet": (lambda m: ListNetLoss(m), lambda m: st.ListNetLoss(m), lists, DOC_LABELS),
        "listmle": (lambda m: ListMLELoss(m, respect_input_order=True), lambda m: st.ListMLELoss(m), lists, DOC_LABELS),
        "listmle-sorted": (lambda m: ListMLELoss(m),
                           lambda m: st.ListMLELoss(m, respect_input_order=False), lists, DOC_LABELS),
        "plistmle": (lambda m: PListMLELoss(m, mini_batch_size=2, respect_input_order=True),
                     lambda m: st.PListMLELoss(m, mini_batch_size=2), lists, DOC_LABELS),
        "ranknet": (lambda m: RankNetLoss(m), lambda m: st.RankNetLoss(m), lists, DOC_LABELS),
        "lambda-k2": (lambda m: LambdaLoss(m, k=2, sigma=2.0), lambda m: st.LambdaLoss(m, k=2, sigma=2.0),
                      lists, DOC_LABELS),
    }
    for name, scheme in st_schemes.items():
        cases[f"lambda-{name}"] = (lambda m, n=name: LambdaLoss(m, weighting_scheme=n),
                                   lambda m, s=scheme: st.LambdaLoss(m, weighting_scheme=s()), lists, DOC_LABELS)
    for name, scheme in st_schemes.items():  # sentence-transformers' scheme objects, given to fastrank's loss
        cases[f"lambda-st-{name}"] = (lambda m, s=scheme: LambdaLoss(m, weighting_scheme=s()),
                                      lambda m, s=scheme: st.LambdaLoss(m, weighting_scheme=s()), lists, DOC_LABELS)
    import fastrank.losses as fr_losses  # the same scheme objects under fastrank's names: imports changed

    for name, scheme in st_schemes.items():
        mine = getattr(fr_losses, scheme.__name__)
        cases[f"lambda-fastrank-{name}"] = (lambda m, s=mine: LambdaLoss(m, weighting_scheme=s()),
                                            lambda m, s=scheme: st.LambdaLoss(m, weighting_scheme=s()), lists,
                                            DOC_LABELS)
    cases["lambda-fastrank-ndcg_loss2pp-mu3"] = (
        lambda m: LambdaLoss(m, weighting_scheme=fr_losses.NDCGLoss2PPScheme(mu=3.0)),
        lambda m: st.LambdaLoss(m, weighting_scheme=st.NDCGLoss2PPScheme(mu=3.0)), lists, DOC_LABELS)
    cases["plistmle-lambda_weight-fastrank"] = (
        lambda m: PListMLELoss(m, lambda_weight=fr_losses.PListMLELambdaWeight(), respect_input_order=True),
        lambda m: st.PListMLELoss(m, lambda_weight=st.PListMLELambdaWeight()), lists, DOC_LABELS)
    cases["lambda-st-ndcg_loss2pp-mu3"] = (lambda m: LambdaLoss(m, weighting_scheme=st.NDCGLoss2PPScheme(mu=3.0)),
                                           lambda m: st.LambdaLoss(m, weighting_scheme=st.NDCGLoss2PPScheme(mu=3.0)),
                                           lists, DOC_LABELS)
    custom = lambda mask: mask.float() * 0.5 + torch.arange(mask.shape[1]).flip(0) * mask  # noqa: E731
    for name, weight in (("default", lambda: st.PListMLELambdaWeight()), ("none", lambda: None),
                         ("custom", lambda: st.PListMLELambdaWeight(rank_discount_fn=custom))):
        cases[f"plistmle-lambda_weight-{name}"] = (
            lambda m, w=weight: PListMLELoss(m, lambda_weight=w(), respect_input_order=True),
            lambda m, w=weight: st.PListMLELoss(m, lambda_weight=w()), lists, DOC_LABELS)
    cases["cached-mnrl-progress-bar"] = (
        lambda m: CachedMultipleNegativesRankingLoss(m, num_negatives=2, mini_batch_size=3, show_progress_bar=True),
        lambda m: st.CachedMultipleNegativesRankingLoss(m, num_negatives=2, mini_batch_size=3, show_progress_bar=True),
        [QUERIES, POSITIVES, NEGATIVES], None)
    for name, ours, theirs in (("mnrl", MultipleNegativesRankingLoss, st.MultipleNegativesRankingLoss),
                               ("cached-mnrl", CachedMultipleNegativesRankingLoss,
                                st.CachedMultipleNegativesRankingLoss)):
        extra = {"mini_batch_size": 3} if name == "cached-mnrl" else {}
        for negatives in (None, 2):
            cases[f"{name}-{negatives}"] = (
                lambda m, c=ours, n=negatives, e=extra: c(m, num_negatives=n, **e),
                lambda m, c=theirs, n=negatives, e=extra: c(m, num_negatives=n, **e),
                [QUERIES, POSITIVES, NEGATIVES], None)
    return cases


ST_CASES = ["bce", "bce-pos-weight", "mse", "bce-st-order-sum", "bce-weight", "mse-sum", "margin-mse-sum",
            "plistmle-positional-none", "margin-mse", "margin-mse-scores", "listnet", "listmle",
            "listmle-sorted", "plistmle", "ranknet", "lambda-k2", *(f"lambda-{s}" for s in SCHEMES),
            *(f"{n}-{k}" for n in ("mnrl", "cached-mnrl") for k in (None, 2)),
            *(f"lambda-st-{s}" for s in SCHEMES), "lambda-st-ndcg_loss2pp-mu3",
            *(f"lambda-fastrank-{s}" for s in SCHEMES), "lambda-fastrank-ndcg_loss2pp-mu3",
            "plistmle-lambda_weight-fastrank",
            *(f"plistmle-lambda_weight-{w}" for w in ("default", "none", "custom")),
            "cached-mnrl-progress-bar"]  # listed here: no import at collection


@pytest.mark.parametrize("case", ST_CASES)
def test_same_value_as_sentence_transformers(models, case: str) -> None:
    cases = _st_cases()
    assert sorted(cases) == sorted(ST_CASES)
    ours_of, theirs_of, inputs, labels = cases[case]
    fr, st = models
    torch.manual_seed(7)  # the in-batch negative sampling draws from the global RNG in both libraries
    ours = ours_of(fr)(inputs, labels)
    st_labels = [torch.tensor(row) for row in labels] if isinstance(labels, list) else labels
    torch.manual_seed(7)
    theirs = theirs_of(st)(inputs, st_labels)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


def test_cross_entropy_same_value_as_sentence_transformers(tiny_model_factory) -> None:
    import fastrank
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers.cross_encoder.losses import CrossEntropyLoss as STCrossEntropyLoss

    path = tiny_model_factory(3)
    fr, st = fastrank.CrossEncoder(path, device="cpu").eval(), STCrossEncoder(str(path), device="cpu").eval()
    labels = torch.tensor([0, 2, 1, 2])
    ours = CrossEntropyLoss(fr)([QUERIES, POSITIVES], labels.float())
    theirs = STCrossEntropyLoss(st)([QUERIES, POSITIVES], labels)
    smoothed = {"label_smoothing": 0.1, "weight": torch.tensor([1.0, 2.0, 0.5]), "reduction": "sum"}  # TypeError before
    assert CrossEntropyLoss(fr, **smoothed)([QUERIES, POSITIVES], labels.float()).item() == pytest.approx(
        STCrossEntropyLoss(st, **smoothed)([QUERIES, POSITIVES], labels).item(), abs=1e-5)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\) got an unexpected keyword argument 'smoothing' "
                                        r"\(the torch loss it wraps takes weight, ignore_index, reduction, "
                                        r"label_smoothing\)"):
        CrossEntropyLoss(fr, smoothing=0.1)
    with pytest.raises(LossConfigError, match=r"reduction must be 'mean' or 'sum', got 'none'"):
        CrossEntropyLoss(fr, reduction="none")
    skipped = torch.tensor([0, -100, 1, 2])  # an ignored row passes the class-id check (it was a DataError)
    assert CrossEntropyLoss(fr, ignore_index=-100)([QUERIES, POSITIVES], skipped.float()).item() == pytest.approx(
        STCrossEntropyLoss(st, ignore_index=-100)([QUERIES, POSITIVES], skipped).item(), abs=1e-5)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


# ---------------------------------------------------------------------------------------------- gradient caching
def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return grads


def test_cached_mnrl_gradients_equal_uncached(models) -> None:
    fr, _ = models
    fr.zero_grad(set_to_none=True)
    inputs = [QUERIES, POSITIVES, NEGATIVES, NEGATIVES_2]
    plain = MultipleNegativesRankingLoss(fr, num_negatives=None)(inputs)
    plain.backward()
    expected = _grads(fr)
    cached = CachedMultipleNegativesRankingLoss(fr, num_negatives=None, mini_batch_size=5)(inputs)
    cached.backward()
    got = _grads(fr)
    assert cached.item() == pytest.approx(plain.item(), abs=1e-6)
    assert len(got) == len(expected) > 0
    assert max((a - b).abs().max().item() for a, b in zip(got, expected)) < 1e-5
    assert max(g.abs().max().item() for g in expected) > 1e-4  # the comparison is not between zeros


def test_cached_mnrl_replays_dropout_and_scales_by_outer_gradient(tiny_model_dir) -> None:
    """In train mode the second pass must draw the first pass's dropout masks, or the gradients are wrong."""
    import fastrank

    model = fastrank.CrossEncoder(tiny_model_dir, device="cpu").train()
    inputs = [QUERIES, POSITIVES, NEGATIVES]
    torch.manual_seed(11)
    MultipleNegativesRankingLoss(model, num_negatives=None)(inputs).backward()
    expected = _grads(model)
    torch.manual_seed(11)  # one mini-batch holding every pair: same RNG stream as the uncached pass
    (2.0 * CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=64)(inputs)).backward()
    got = _grads(model)
    assert max((a - 2.0 * b).abs().max().item() for a, b in zip(got, expected)) < 1e-5


# ---------------------------------------------------------------------------------------------- bf16
@pytest.mark.parametrize("case", ["bce", "listnet", "lambda", "cached-mnrl"])
def test_bf16_autocast_gives_finite_loss_and_gradients(models, case: str) -> None:
    fr, _ = models
    data = {
        "bce": ([QUERIES, POSITIVES], torch.tensor([1.0, 0.0, 1.0, 0.0])),
        "listnet": ([QUERIES[:3], DOC_LISTS], DOC_LABELS),
        "lambda": ([QUERIES[:3], DOC_LISTS], DOC_LABELS),
        "cached-mnrl": ([QUERIES, POSITIVES, NEGATIVES], None),
    }
    fr.zero_grad(set_to_none=True)
    options = {"cached-mnrl": {"mini_batch_size": 4}}.get(case, {})
    loss = get_loss(case, fr, **options)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(*data[case])
    value.backward()
    grads = _grads(fr)
    assert torch.isfinite(value) and grads
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().max() > 0 for g in grads)


# ---------------------------------------------------------------------------------------------- bad input
def test_wrong_column_counts_say_what_is_expected() -> None:
    one = TableScorer({("q", "d"): 0.0})
    with pytest.raises(DataError, match=r"ListNetLoss expects 2 input columns \(query, documents list\), got 3"):
        ListNetLoss(one)([["q"], [["d"]], [["d"]]], [[1.0]])
    with pytest.raises(DataError, match=r"BinaryCrossEntropyLoss expects 2 input columns \(query, document\), got 3"):
        BinaryCrossEntropyLoss(one)([["q"], ["d"], ["d"]], [1.0])
    with pytest.raises(DataError, match=r"expects 2 or more input columns \(query, positive, negative_1"):
        MultipleNegativesRankingLoss(one)([["q"]])
    with pytest.raises(DataError, match=r"same number of rows, got \[1, 2\]"):
        MSELoss(one)([["q"], ["d", "d"]], [1.0])


def test_list_label_mismatch_names_the_row() -> None:
    model, queries, docs = list_scorer(LIST_SCORES)
    labels = [LIST_LABELS[0], LIST_LABELS[1][:3], LIST_LABELS[2]]
    for loss in (ListNetLoss(model), LambdaLoss(model), RankNetLoss(model), PListMLELoss(model)):
        with pytest.raises(DataError, match="row 1 has 4 documents but 3 labels"):
            loss([queries, docs], labels)
    with pytest.raises(DataError, match="documents column must hold a list of documents per row; row 0 is a str"):
        ListNetLoss(model)([queries, ["q0-d0", "q1-d0", "q2-d0"]], LIST_LABELS)
    with pytest.raises(DataError, match="one list of labels per row"):
        ListNetLoss(model)([queries, docs], torch.tensor([1.0, 0.0, 1.0]))


def test_pair_label_errors() -> None:
    model = TableScorer({("q", "a"): 0.0, ("q", "b"): 1.0})
    inputs = [["q", "q"], ["a", "b"]]
    with pytest.raises(DataError, match=r"expects 2 labels \(one per row\), got 3"):
        BinaryCrossEntropyLoss(model)(inputs, [1.0, 0.0, 1.0])
    with pytest.raises(DataError, match=r"labels must lie in \[0, 1\]"):
        BinaryCrossEntropyLoss(model)(inputs, [2.0, 0.0])
    with pytest.raises(DataError, match="MarginMSELoss: with 1 negative column"):
        MarginMSELoss(model)([["q"], ["a"], ["b"]], [[1.0, 2.0, 3.0]])
    three = TableScorer({("q", "a"): [0.0, 1.0, 2.0]}, num_labels=3)
    with pytest.raises(DataError, match=r"class ids must lie in 0..2"):
        CrossEntropyLoss(three)([["q"], ["a"]], [3])


def test_model_that_does_not_fit_the_loss_is_refused() -> None:
    two = TableScorer({("q", "a"): [0.0, 1.0]}, num_labels=2)
    with pytest.raises(ValueError, match="expects a model with 1 output label .* has 2") as info:
        BinaryCrossEntropyLoss(two)
    assert isinstance(info.value, LossConfigError)
    with pytest.raises(LossConfigError, match="2 or more output labels"):
        CrossEntropyLoss(TableScorer({("q", "a"): 0.0}))


def test_registry_and_option_errors() -> None:
    assert set(LOSSES) == {"bce", "ce", "mse", "margin-mse", "mnrl", "cached-mnrl", "listnet", "listmle",
                           "plistmle", "lambda", "ranknet"}
    model = TableScorer({("q", "a"): 0.0})
    for name, cls in LOSSES.items():
        assert cls.data_format in {"pairs", "ntuples", "lists", "distillation"}
        for section in ("Args:", "Inputs:", "| columns", "References:"):
            assert section in cls.__doc__, (name, section)
        if name != "ce":
            assert isinstance(get_loss(name, model), cls)
    with pytest.raises(ValueError, match="unknown loss 'listwise'; known losses: bce, ce, mse, margin-mse, mnrl"):
        get_loss("listwise", model)
    with pytest.raises(LossConfigError, match="has no option.* temperature; accepted: .*mini_batch_size"):
        get_loss("listnet", model, temperature=2.0)
    with pytest.raises(LossConfigError, match="weighting_scheme must be one of ndcg_loss2pp"):
        get_loss("lambda", model, weighting_scheme="ndcg")
    assert get_loss("Cached_MNRL", model, mini_batch_size=3).mini_batch_size == 3


class _PriorEmbedder:
    """Unit vectors whose inner product with any query is the number after 'd' divided by 10 (q*-d3 -> 0.3)."""

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts, batch_size=64, show_progress_bar=None):
        import numpy as np

        self.encoded += list(texts)
        out = []
        for t in texts:
            s = 1.0 if "-" not in t else int(t.split("-d")[1]) / 10
            out.append([s, math.sqrt(max(0.0, 1 - s * s))])
        return np.asarray(out, dtype=np.float32)


def test_listnet_with_first_stage_prior_ranks_logit_plus_weighted_prior() -> None:
    from fastrank.losses.prior import EmbeddingPrior

    model, queries, docs = list_scorer(LIST_SCORES)
    embedder = _PriorEmbedder()
    loss = ListNetLoss(model)
    loss.set_prior(EmbeddingPrior(embedder), 3.0)
    shifted = [[s + 3.0 * j / 10 for j, s in enumerate(row)] for row in LIST_SCORES]
    expected = sum(-sum(p * lp for p, lp in zip(map(math.exp, log_softmax(y)), log_softmax(s)))
                   for s, y in zip(shifted, LIST_LABELS)) / 3
    assert loss([queries, docs], LIST_LABELS).item() == pytest.approx(expected, rel=1e-5)
    n_texts = len(embedder.encoded)
    loss([queries, docs], LIST_LABELS)  # second epoch: every text already embedded
    assert len(embedder.encoded) == n_texts == len(queries) + sum(map(len, docs))
    loss.set_prior(None, 0.0)
    assert loss([queries, docs], LIST_LABELS).item() == pytest.approx(ListNetLoss(model)([queries, docs], LIST_LABELS).item())
    with pytest.raises(ValueError, match="prior weight must be a number >= 0"):
        loss.set_prior(EmbeddingPrior(embedder), -1.0)


def test_prior_reranker_scores_logit_plus_weighted_prior() -> None:
    import numpy as np

    from fastrank.losses.prior import EmbeddingPrior, PriorReranker

    class Logits:
        def predict(self, pairs, batch_size=32, activation=None, show_progress_bar=None):
            assert activation == "identity"  # the prior is added to raw logits, as in training
            return np.array([float(len(d)) for _, d in pairs], dtype=np.float32)

    scored = PriorReranker(Logits(), EmbeddingPrior(_PriorEmbedder()), 2.0).predict([("q0", "q0-d5"), ("q1", "q1-d10")])
    assert scored.tolist() == pytest.approx([5 + 2 * 0.5, 6 + 2 * 1.0])


def test_sentence_transformers_options_map_or_fail_clearly() -> None:
    from sentence_transformers.cross_encoder import losses as st
    from sentence_transformers.cross_encoder.losses.lambda_loss import BaseWeightingScheme

    model = TableScorer({("q", "a"): 0.0})
    for scheme, name in ((st.NDCGLoss2PPScheme(mu=4.0), "ndcg_loss2pp"), (st.NDCGLoss2Scheme(), "ndcg_loss2"),
                         (st.LambdaRankScheme(), "lambdarank"), (st.NDCGLoss1Scheme(), "ndcg_loss1"),
                         (st.NoWeightingScheme(), "none")):
        loss = LambdaLoss(model, weighting_scheme=scheme)
        assert loss.weighting_scheme == name
    assert LambdaLoss(model, weighting_scheme=st.NDCGLoss2PPScheme(mu=4.0)).mu == 4.0

    class MyScheme(BaseWeightingScheme):
        def forward(self, gain, discount, true_sorted):
            return gain

    with pytest.raises(LossConfigError, match=r"weighting_scheme MyScheme .* not supported; use one of "
                                              r"NoWeightingScheme, NDCGLoss1Scheme.* or fastrank's names ndcg_loss2pp"):
        LambdaLoss(model, weighting_scheme=MyScheme())
    assert PListMLELoss(model, lambda_weight=None).weighted is False
    assert PListMLELoss(model).weighted is True
    with pytest.raises(LossConfigError, match="lambda_weight must be left out when rank_discount_fn is given"):
        PListMLELoss(model, rank_discount_fn=PListMLELoss.default_rank_discount, lambda_weight=None)
    with pytest.raises(LossConfigError, match="lambda_weight must be None .* or a callable"):
        PListMLELoss(model, lambda_weight=2.0)
    assert CachedMultipleNegativesRankingLoss(model, show_progress_bar=True).show_progress_bar is True


def test_plistmle_stays_finite_on_lists_of_127_documents_and_more(models) -> None:
    """The position weights reach ~2**126 there: multiplied into the log-probabilities before normalising, they
    overflowed float32 and the loss was inf (gradients were right), where sentence-transformers gives a number."""
    from sentence_transformers.cross_encoder import losses as st

    fr, sm = models
    for n in (126, 130):
        docs = [[f"document number {i} about topic {i % 7}" for i in range(n)]]
        labels = [[float(n - i) for i in range(n)]]
        ours = PListMLELoss(fr, respect_input_order=True)([["q"], docs], labels)
        theirs = st.PListMLELoss(sm)([["q"], docs], [torch.tensor(labels[0])])
        assert math.isfinite(ours.item()) and ours.item() == pytest.approx(theirs.item(), rel=1e-5), n


def test_lambda_loss_takes_sentence_transformers_positional_order(models) -> None:
    """(model, weighting_scheme, k, sigma, eps, reduction_log, activation_fn, mini_batch_size): fastrank's mu sat
    before activation_fn, so a sigmoid given there was read as mu (and silently replaced by the scheme's)."""
    from sentence_transformers.cross_encoder import losses as st

    fr, sm = models
    queries, docs, labels = QUERIES[:3], DOC_LISTS, DOC_LABELS
    for scheme in (st.NDCGLoss2PPScheme(), st.LambdaRankScheme()):
        args = (scheme, None, 1.0, 1e-10, "binary", torch.nn.Sigmoid(), 2)
        ours = LambdaLoss(fr, *args)
        assert isinstance(ours.activation_fn, torch.nn.Sigmoid) and ours.mini_batch_size == 2
        theirs = st.LambdaLoss(sm, *args)([queries, docs], [torch.tensor(row) for row in labels])
        assert ours([queries, docs], labels).item() == pytest.approx(theirs.item(), abs=1e-5)
    with pytest.raises(TypeError):
        LambdaLoss(fr, "ndcg_loss2pp", None, 1.0, 1e-10, "binary", None, None, 10.0)  # mu is keyword-only
    assert LambdaLoss(fr, mu=3.0).mu == 3.0
    with pytest.raises(LossConfigError, match=r"mu must be a finite number >= 0 .*got 'x'"):
        LambdaLoss(fr, mu="x")


def test_torch_loss_keywords_pass_get_loss_and_json_options(tiny_model_factory, models) -> None:
    """get_loss / --loss-options read a loss's accepted options from its signature, where **kwargs showed up as an
    option named 'kwargs' and reduction, label_smoothing, weight were refused; a JSON weight is a list."""
    import fastrank
    from sentence_transformers.cross_encoder import losses as st

    fr, sm = models
    summed = get_loss("bce", fr, reduction="sum")([QUERIES, POSITIVES], [1.0, 1.0, 0.0, 1.0])
    assert summed.item() == pytest.approx(
        st.BinaryCrossEntropyLoss(sm, reduction="sum")([QUERIES, POSITIVES], torch.tensor([1.0, 1.0, 0.0, 1.0])).item(),
        abs=1e-5)
    assert get_loss("margin-mse", fr, reduction="sum").reduction == "sum"
    with pytest.raises(LossConfigError, match=r"has no option\(s\) kwargs; accepted: activation_fn, pos_weight, "
                                              r"weight, reduction"):
        get_loss("bce", fr, kwargs={"reduction": "sum"})
    three = fastrank.CrossEncoder(tiny_model_factory(3), device="cpu").eval()
    labels = torch.tensor([0, 2, 1, 2])
    from_json = get_loss("ce", three, label_smoothing=0.1, weight=[1.0, 2.0, 0.5])([QUERIES, POSITIVES], labels)
    given = CrossEntropyLoss(three, label_smoothing=0.1, weight=torch.tensor([1.0, 2.0, 0.5]))
    assert from_json.item() == pytest.approx(given([QUERIES, POSITIVES], labels).item(), abs=1e-6)
    one_hot = torch.nn.functional.one_hot(labels, 3)  # ints: read as the class probabilities they are
    assert CrossEntropyLoss(three)([QUERIES, POSITIVES], one_hot).item() == pytest.approx(
        CrossEntropyLoss(three)([QUERIES, POSITIVES], one_hot.float()).item(), abs=1e-7)
