"""Model card (README.md) written next to every saved checkpoint: what it was trained from, on, and how well.

The card's data also travels as ``fastrank_card.json`` beside the weights, so a checkpoint that is loaded and saved
again (an export's torch rung, a copy) keeps its training facts: a first-stage prior or titled documents change how
the model must be scored, and a re-saved card must not lose them.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CARD_DATA_FILE = "fastrank_card.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load_card_data(location: str | Path, name: str) -> dict[str, Any]:
    """The card data saved with a checkpoint directory, else a new card naming ``name`` as the base model."""
    path = Path(location) / CARD_DATA_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("ignored %s (%s): the model card will be written anew", path, exc)
        else:
            if isinstance(data, dict):
                return data
            logger.warning("ignored %s: it holds no JSON object; the model card will be written anew", path)
    return {"base_model": base_model_name(name)}


def base_model_name(name: str | Path) -> str:
    """How a card names its base model: a hub id as given, a local directory by its absolute path (a relative
    ``runs/base`` would name another folder, or pass for a hub id, when the card is read from elsewhere)."""
    text = str(name)
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


CARD_FIELDS = ("model_name", "language", "license", "train_datasets")


def card_fields(source: Any) -> dict[str, Any]:
    """The card fields (``CARD_FIELDS``) set in ``source``: a mapping, or sentence-transformers'
    ``CrossEncoderModelCardData`` (read by attribute); None and empty values are left out."""
    if source is None:
        return {}
    get = source.get if isinstance(source, dict) else (lambda key: getattr(source, key, None))
    return {key: get(key) for key in CARD_FIELDS if get(key) not in (None, "", [], ())}


class CardDataView:
    """``model.model_card_data`` as sentence-transformers' evaluators use it: their metrics land in the model's
    ``card_data["evaluation"]`` (rendered on the card), so ST's own evaluators run on a fastrank model."""

    def __init__(self, card_data: dict[str, Any]) -> None:
        self.card_data = card_data

    def set_evaluation_metrics(self, evaluator: Any, metrics: dict[str, Any], epoch: float = 0, step: int = 0) -> None:
        self.card_data.setdefault("evaluation", {}).update({str(k): v for k, v in metrics.items()})


def write_card(model: Any, directory: Path, served_as: str | None = None,
               card_data: dict[str, Any] | None = None) -> None:
    """Write ``README.md`` and ``fastrank_card.json`` for ``model`` into ``directory``, from ``card_data`` when given
    (one save's card: a pushed copy, a named save) else from the model's own."""
    data = model.card_data if card_data is None else card_data
    (directory / CARD_DATA_FILE).write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    (directory / "README.md").write_text(render_model_card(model, served_as, data), encoding="utf-8")


_LOCAL_PATH = re.compile(r"(?<![\w.:/~-])[~/][^\s'\"(),|]*")  # /home/me/data.jsonl, ~/runs/m; not owner/name, URLs


def public_card_data(card_data: dict[str, Any]) -> dict[str, Any]:
    """``card_data`` with every absolute or home path in its text cut to the file or folder's name: a card pushed to
    the Hub does not publish where files sat on the machine that trained the model (a home directory, a user
    name). Hub ids, URLs and relative paths are kept."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return _LOCAL_PATH.sub(lambda m: Path(m.group(0)).name or m.group(0), value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(card_data)


def _hub_id(value: Any) -> str | None:
    """``value`` when it reads as a hub id (owner/name) and is no local path; the card's metadata takes only those."""
    text = str(value)
    if not _HUB_ID.match(text) or Path(text).exists():
        return None
    return text


def _table(rows: dict[str, Any]) -> str:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def render_model_card(model: Any, served_as: str | None = None, card_data: dict[str, Any] | None = None) -> str:
    """Render the card from ``model.card_data`` (filled by the trainer) and the model's config.

    ``served_as`` (e.g. ``"torch bf16"``) marks a copy inside an export artifact that serves these fp32 weights at
    another precision, so the card does not promise the served scores equal sentence-transformers' fp32 ones.
    """
    data = dict(model.card_data if card_data is None else card_data)
    base = _hub_id(data.get("base_model"))
    parts = [
        "---",
        "library_name: fastrank",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, fastrank]",
        *([f"base_model: {base}"] if base else []),
        *([f"language: {json.dumps(data['language'])}"] if data.get("language") else []),
        *([f"license: {data['license']}"] if data.get("license") else []),
        "---",
        "",
        f"# {data.get('model_name') or 'Cross-encoder reranker'}",
        "",
        "Scores (query, document) pairs; higher means more relevant. Trained with "
        "[fastrank](https://github.com/fastrank/fastrank); loads in `fastrank.CrossEncoder` and "
        "sentence-transformers' `CrossEncoder` with identical scores.",
        "",
    ]
    if served_as:
        parts += [f"This copy belongs to a fastrank export artifact that serves it as **{served_as}**: its scores "
                  "there differ slightly from the fp32 weights stored here (the artifact's `fastrank.json` holds "
                  "the measured parity). Loaded from this directory, both libraries score in fp32.", ""]
    parts += [
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
    prompt = getattr(model, "default_prompt", None)
    if prompt:
        parts += ["## Prompt", "",
                  f"The default prompt `{model.default_prompt_name}`, {json.dumps(prompt)}, opens every query. "
                  "fastrank (CrossEncoder, Reranker, an export) and sentence-transformers 6+ apply it from the saved "
                  "configuration; elsewhere, put it before your queries yourself.", ""]
    if "train_data" in data:
        parts += ["## Training data", "", str(data["train_data"]), ""]
    if data.get("train_datasets"):
        names = [d.get("name") or d.get("id") if isinstance(d, dict) else str(d) for d in data["train_datasets"]]
        parts += ["## Training datasets", "", *[f"- {name}" for name in names], ""]
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
