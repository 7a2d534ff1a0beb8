"""Model card (README.md) written next to every saved checkpoint: what it was trained from, on, and how well."""

from __future__ import annotations

import json
from typing import Any


def _table(rows: dict[str, Any]) -> str:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def render_model_card(model: Any) -> str:
    """Render the card from ``model.card_data`` (filled by the trainer) and the model's config."""
    data = dict(model.card_data)
    parts = [
        "---",
        "library_name: fastrank",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, fastrank]",
        f"base_model: {data.get('base_model', 'unknown')}",
        "---",
        "",
        "# Cross-encoder reranker",
        "",
        "Scores (query, document) pairs; higher means more relevant. Trained with "
        "[fastrank](https://github.com/fastrank/fastrank); loads in `fastrank.CrossEncoder` and "
        "sentence-transformers' `CrossEncoder` with identical scores.",
        "",
        "## Model",
        _table({
            "base model": data.get("base_model", "unknown"),
            "architecture": ", ".join(model.config.architectures or []),
            "max length (tokens)": model.max_length,
            "num labels": model.num_labels,
            "activation": model.activation,
            **({"ranking score": data["ranking_score"]} if "ranking_score" in data else {}),
        }),
        "",
    ]
    if "train_data" in data:
        parts += ["## Training data", "", str(data["train_data"]), ""]
    if "titled_documents" in data:
        sep = data["titled_documents"]["separator"]
        parts += ["## Titled documents", "",
                  f"Trained on documents with a title, read as `<title> {sep} <text>`. Pass documents as "
                  "`{'title': ..., 'text': ...}` to fastrank (rerank, Reranker, CrossEncoder, the HTTP service), "
                  f"or write them that way yourself (sentence-transformers: `f'{{title}} {sep} {{text}}'`).", ""]
    if "loss" in data:
        parts += ["## Loss", "", str(data["loss"]), ""]
    if "first_stage_prior" in data:
        prior = data["first_stage_prior"]
        parts += ["## First-stage prior", "",
                  f"Trained to correct a first stage: score = logit + {prior['weight']} * the inner product of "
                  f"`{prior['model']}` embeddings. Score it that way (`fastrank.losses.prior.PriorReranker`); the "
                  "logit alone is only the correction.", "", "```json", json.dumps(prior), "```", ""]
    if "hyperparameters" in data:
        parts += ["## Hyperparameters", _table(data["hyperparameters"]), ""]
    if "evaluation" in data:
        parts += ["## Evaluation", "", "```json", json.dumps(data["evaluation"], indent=2), "```", ""]
    rank = ("model.rank('how are glacier caves formed?', ['A glacier cave is a cave formed within the ice.', "
            "'Paris.'])")
    if model.num_labels > 1:  # fastrank.reranker.relevance: what rank(), Reranker and the service order by
        rank += f"  # ordered by the last of the {model.num_labels} classes' softmax probability"
    parts += ["## Usage", "```python", "from fastrank import CrossEncoder", "model = CrossEncoder('path/to/this/dir')",
              rank, "```", ""]
    return "\n".join(parts)
