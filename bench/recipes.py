"""Training-recipe comparison on WikiQA: fastrank recipes and sentence-transformers' recipe, side by side.

    python -m bench recipes --recipe default            # one fastrank recipe (see RECIPES)
    python -m bench recipes --recipe st-bce-2e-5-1ep    # sentence-transformers' CrossEncoderTrainer reference

Each run trains on ../shared/data/wikiqa/train.tokenized.jsonl only, evaluates on test.jsonl with fastrank's
metrics and appends a record to bench/results/recipes.jsonl (MAP, MRR@10, NDCG@10, wall time, pairs/s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from bench.common import WIKIQA, append_record, require_shared_data

# name -> TrainConfig overrides (fastrank) or sentence-transformers settings ("st": True)
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "default-seed13": {"seed": 13},  # the default recipe's spread over seeds (data order and head)
    "default-mine5": {"mine_negatives": 5},
    "baseline-cosine": {"baseline": "cosine"},
    "baseline-input-order": {"baseline": "input-order"},
    "listnet-5e-5-3ep-bs8": {"loss": "listnet", "lr": 5e-5, "epochs": 3, "batch_size": 8},
    "listnet-1e-4-3ep-bs8": {"loss": "listnet", "lr": 1e-4, "epochs": 3, "batch_size": 8},
    "lambda-1e-4-3ep-bs8": {"loss": "lambda", "lr": 1e-4, "epochs": 3, "batch_size": 8},
    "bce-5e-5-3ep-bs32": {"loss": "bce", "lr": 5e-5, "epochs": 3, "batch_size": 32},
    "listnet-s10-1e-4-3ep-bs8": {"loss": "listnet", "lr": 1e-4, "epochs": 3, "batch_size": 8,
                                 "loss_options": {"label_scale": 10}},
    "listnet-s10-5e-5-3ep-bs8": {"loss": "listnet", "lr": 5e-5, "epochs": 3, "batch_size": 8,
                                 "loss_options": {"label_scale": 10}},
    "bce-pw4-1e-4-3ep-bs32": {"loss": "bce", "lr": 1e-4, "epochs": 3, "batch_size": 32,
                              "loss_options": {"pos_weight": 4}},
    "bce-2e-5-1ep": {"loss": "bce", "lr": 2e-5, "epochs": 1, "batch_size": 32},
    "st-bce-2e-5-1ep": {"st": True, "lr": 2e-5, "epochs": 1, "batch_size": 32},
}


def _evaluate(model) -> dict[str, float]:
    from fastrank.evaluation.evaluators import RerankingEvaluator

    return RerankingEvaluator.from_jsonl(str(WIKIQA / "test.jsonl")).evaluate(model).metrics


def run_fastrank(name: str, overrides: dict[str, Any], keep_model: str | None = None) -> dict[str, Any]:
    from fastrank.model import CrossEncoder
    from fastrank.training.recipe import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        out = keep_model or f"{tmp}/model"
        config = TrainConfig(data=str(WIKIQA / "train.tokenized.jsonl"), out=out, show_progress_bar=False,
                             **overrides)
        start = time.perf_counter()
        result = train(config)
        wall = time.perf_counter() - start
        metrics = _evaluate(CrossEncoder(out))
    keys = ("loss", "lr", "epochs", "batch_size", "max_length", "loss_options", "seed", "mine_negatives")
    settings = {k: result["config"][k] for k in keys}
    return {"recipe": name, "library": "fastrank", "overrides": overrides, "settings": settings, "metrics": metrics,
            "train_seconds": result["train_seconds"], "wall_seconds": round(wall, 1),
            "train_pairs_per_second": result["train_pairs_per_second"], "bf16": result["bf16"]}


def run_sentence_transformers(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """sentence-transformers' documented CrossEncoder recipe (BCE on pairs) on the same data."""
    import datasets
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from fastrank.data import read_groups, to_pairs
    from fastrank.model import CrossEncoder, resolve_model_path

    cols = to_pairs(read_groups(str(WIKIQA / "train.tokenized.jsonl")))
    dataset = datasets.Dataset.from_dict(cols)
    with tempfile.TemporaryDirectory() as tmp:
        model = STCrossEncoder(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), num_labels=1)
        args = CrossEncoderTrainingArguments(
            output_dir=f"{tmp}/ckpt", num_train_epochs=settings["epochs"], learning_rate=settings["lr"],
            per_device_train_batch_size=settings["batch_size"], warmup_steps=0.1, save_strategy="no",
            report_to="none", seed=12, disable_tqdm=True, use_cpu=True,
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset,
                                      loss=BinaryCrossEntropyLoss(model))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        model.save(f"{tmp}/model")
        metrics = _evaluate(CrossEncoder(f"{tmp}/model"))
    return {"recipe": name, "library": "sentence-transformers", "overrides": settings,
            "settings": {"loss": "bce", **settings}, "metrics": metrics,
            "train_seconds": round(seconds, 1), "wall_seconds": round(seconds, 1),
            "train_pairs_per_second": round(len(dataset) * settings["epochs"] / seconds, 1), "bf16": False}


def run_baseline(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """No training: the embedding model's cosine similarity, or the dataset's own candidate order."""
    import numpy as np

    from fastrank.embedding import EmbeddingModel

    class InputOrder:
        def predict(self, pairs, **_):
            out, last_query, pos = [], None, 0
            for q, _d in pairs:
                pos = pos + 1 if q == last_query else 0
                last_query = q
                out.append(-pos)
            return np.asarray(out, dtype=np.float32)

    model = EmbeddingModel() if settings["baseline"] == "cosine" else InputOrder()
    return {"recipe": name, "library": "baseline", "overrides": settings, "settings": {"loss": settings["baseline"]},
            "metrics": _evaluate(model), "train_seconds": 0, "wall_seconds": 0, "train_pairs_per_second": "",
            "bf16": False}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench recipes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), required=True)
    parser.add_argument("--keep-model", help="Save the (single) fastrank recipe's model here instead of a temp dir.")
    args = parser.parse_args(argv)
    require_shared_data()
    for name in args.recipe:
        settings = dict(RECIPES[name])
        if "baseline" in settings:
            record = run_baseline(name, settings)
        elif settings.pop("st", False):
            record = run_sentence_transformers(name, settings)
        else:
            record = run_fastrank(name, settings, args.keep_model)
        path = append_record("recipes", record)
        m = record["metrics"]
        print(f"{name}: MAP {m['map']:.4f} MRR@10 {m['mrr@10']:.4f} NDCG@10 {m['ndcg@10']:.4f} "
              f"train {record['train_seconds']} s, {record['train_pairs_per_second']} pairs/s -> {path}")
