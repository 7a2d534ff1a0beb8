"""A prompted reranker scored four ways on WikiQA test: ``python -m bench prompts [--model runs/wikiqa]``.

The model is given a default prompt (``--prompt``, default ``"question: "``) and saved; then its logits on every
WikiQA test pair come from fastrank's ``CrossEncoder``, sentence-transformers' own ``CrossEncoder`` loading the
saved folder, and ``Reranker`` over the ONNX artifact ``export_model`` writes from it. They must agree (the prompt
opens every query in each), and must differ from the model scored without the prompt. NDCG@10 of each is recorded.
Appends to bench/results/prompts.jsonl; ``python -m bench report`` shows it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import WIKIQA, append_record, require_shared_data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench prompts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/wikiqa", help="Cross-encoder checkpoint.")
    parser.add_argument("--prompt", default="question: ", help="The default prompt the model is given.")
    args = parser.parse_args(argv)
    require_shared_data()
    start = time.perf_counter()
    import numpy as np
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder as TheirCrossEncoder

    from fastrank import CrossEncoder, Reranker
    from fastrank.evaluation.metrics import evaluate_rankings
    from fastrank.export import export_model

    test = WIKIQA / "test.jsonl"
    rows = [json.loads(line) for line in test.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(r["query"], d) for r in rows for d in r["documents"]]
    tmp = Path(tempfile.mkdtemp(prefix="bench-prompts-"))
    try:
        ours = CrossEncoder(args.model, device="cpu", prompts={"q": args.prompt}, default_prompt_name="q")
        ours.save(tmp / "prompted")
        theirs = TheirCrossEncoder(str(tmp / "prompted"), device="cpu")
        manifest = export_model(tmp / "prompted", tmp / "onnx", optimize="O3")
        artifact = Reranker(tmp / "onnx")
        unprompted = CrossEncoder(args.model, device="cpu")
        logits = {
            "fastrank CrossEncoder": ours.predict(pairs, activation="identity"),
            "sentence-transformers CrossEncoder": theirs.predict(pairs, activation_fn=torch.nn.Identity()),
            "Reranker, ONNX fp32 artifact": artifact.predict(pairs, activation="identity"),
            "fastrank CrossEncoder without the prompt": unprompted.predict(pairs, activation="identity"),
        }
        bounds = np.cumsum([0] + [len(r["documents"]) for r in rows])
        labels = [r["labels"] for r in rows]

        def ndcg(values: np.ndarray) -> float:  # judged from the logits above: each model scores the pairs once
            per_query = [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            return evaluate_rankings(per_query, labels, ks=(10,)).metrics["ndcg@10"]

        reference = logits["fastrank CrossEncoder"]
        record = {
            "experiment": "prompts", "model": args.model, "prompt": args.prompt, "pairs": len(pairs),
            "saved_prompts_read_by_sentence_transformers": {"prompts": theirs.prompts,
                                                            "default_prompt_name": theirs.default_prompt_name},
            "manifest": {"query_prompt": manifest.get("query_prompt"),
                         "manifest_version": manifest["manifest_version"]},
            "rows": {name: {"max_abs_logit_diff": float(np.abs(values - reference).max()),
                            "ndcg@10": ndcg(values)}
                     for name, values in logits.items()},
            "command": "python -m bench prompts"
                       + (f" --model {shlex.quote(args.model)}" if args.model != "runs/wikiqa" else "")
                       + (f" --prompt {shlex.quote(args.prompt)}" if args.prompt != "question: " else ""),
        }
        rows = record["rows"]
        record["agree"] = all(rows[name]["max_abs_logit_diff"] <= AGREE for name in list(rows)[:3])
        record["prompt_changes_scores"] = rows["fastrank CrossEncoder without the prompt"]["max_abs_logit_diff"] > AGREE
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - start, 1)
    path = append_record("prompts", record)
    print(json.dumps(record, indent=1))
    print(f"appended to {path}")
    if not (record["agree"] and record["prompt_changes_scores"]):
        raise SystemExit(f"FAILED: the three prompted scorers must agree within {AGREE} and differ from the "
                         "unprompted model (see rows above)")


AGREE = 1e-4  # largest logit difference between the prompted scorers (fp32 everywhere)

