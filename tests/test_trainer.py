"""CrossEncoderTrainer and the train() recipe on a tiny model: it learns, checkpoints, resumes, fails cleanly."""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fastrank.errors import DataError

WORDS = ["apple", "river", "stone", "cloud", "piano", "tiger", "lemon", "forest", "rocket", "candle", "mirror",
         "garden", "violin", "planet", "window", "bridge"]


def _toy_groups(n: int, seed: int) -> list[dict]:
    """Each query is one word; its relevant document contains it and says "good", the others say "bad"."""
    rng = random.Random(seed)
    groups = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        others = [w for w in WORDS if w != word]
        docs = [f"the {word} is good"] + [f"the {a} is bad" for a in rng.sample(others, 4)]
        labels = [1, 0, 0, 0, 0]
        order = list(range(5))
        rng.shuffle(order)
        groups.append({"query_id": str(i), "query": word, "documents": [docs[k] for k in order],
                       "labels": [labels[k] for k in order]})
    return groups


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    for name, n, seed in (("train", 96, 0), ("test", 32, 1)):
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(g) for g in _toy_groups(n, seed)) + "\n")
    return root


def _config(toy_data, tiny_model_dir, out, **kw):
    from fastrank.training.recipe import TrainConfig

    base = {"data": str(toy_data / "train.jsonl"), "eval_data": str(toy_data / "test.jsonl"), "out": str(out),
            "base": str(tiny_model_dir), "loss": "listnet", "epochs": 4, "lr": 3e-3, "batch_size": 8,
            "max_length": 32, "bf16": "false", "show_progress_bar": False, "warmup_ratio": 0.0}
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("loss", ["listnet", "bce", "mnrl"])
def test_training_improves_ranking(toy_data, tiny_model_dir, tmp_path, loss):
    from fastrank import CrossEncoder
    from fastrank.training.recipe import train

    result = train(_config(toy_data, tiny_model_dir, tmp_path / "model", loss=loss))
    before, after = result["eval_before"]["metrics"]["map"], result["eval_after"]["metrics"]["map"]
    assert after > before + 0.2, (before, after)
    assert after > 0.8
    saved = CrossEncoder(tmp_path / "model", device="cpu")
    scores = saved.predict([("tiger", "the tiger is good"), ("tiger", "the apple is bad")])
    assert scores[0] > scores[1]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "ListNetLoss" in card or "BinaryCrossEntropyLoss" in card or "MultipleNegativesRankingLoss" in card
    assert not (tmp_path / "model.checkpoints").exists()


def test_checkpoint_resume_continues_training(toy_data, tiny_model_dir, tmp_path):
    import datasets

    from fastrank import CrossEncoder
    from fastrank.data import read_groups, to_lists
    from fastrank.losses import ListNetLoss
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    ds = datasets.Dataset.from_dict(to_lists(read_groups(toy_data / "train.jsonl")))

    def make(epochs):
        model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
        args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / "ckpt"), num_train_epochs=epochs,
                                             per_device_train_batch_size=8, learning_rate=1e-3, save_strategy="epoch",
                                             seed=3, data_seed=3, use_cpu=True, disable_tqdm=True)
        return model, CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=ListNetLoss(model))

    model, trainer = make(1)
    trainer.train()
    ckpt = tmp_path / "ckpt" / "checkpoint-12"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "optimizer.pt").is_file()
    from_ckpt = CrossEncoder(ckpt, device="cpu")
    np.testing.assert_allclose(from_ckpt.predict([("a", "b")]), model.predict([("a", "b")]), atol=1e-6)

    resumed_model, resumed = make(2)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 24
    assert not np.allclose(resumed_model.predict([("a", "b")]), model.predict([("a", "b")]))


@pytest.mark.parametrize("sampler", ["length", "no_duplicates", "random"])
def test_a_run_resumed_inside_a_later_epoch_ends_as_the_uninterrupted_run(toy_data, tiny_model_dir, tmp_path,
                                                                          sampler):
    """Checkpoints every 5 steps, 12 steps an epoch: a crash after step 15 resumes inside epoch 2, whose remaining
    batches must be epoch 2's (a sampler drawing from torch's global RNG replayed epoch 1's order there, as the
    Trainer builds the epoch's iterator before restoring the RNG state); the weights then equal an uninterrupted
    run's. ``data_seed`` alone changes the order."""
    import datasets
    from transformers import TrainerCallback

    from fastrank import CrossEncoder
    from fastrank.data import read_groups, to_lists, to_ntuples
    from fastrank.losses import ListNetLoss, MultipleNegativesRankingLoss
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    groups = read_groups(toy_data / "train.jsonl")
    nodup = sampler == "no_duplicates"
    ds = datasets.Dataset.from_dict(to_ntuples(groups, 1) if nodup else to_lists(groups))

    class Crash(TrainerCallback):
        def __init__(self, at):
            self.at = at

        def on_save(self, args, state, control, **kw):
            if state.global_step == self.at:
                raise KeyboardInterrupt("a crash after this checkpoint")

    def run(name, crash_at=None, resume=None, data_seed=3):
        seen = []
        model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
        args = CrossEncoderTrainingArguments(
            output_dir=str(tmp_path / name), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=1e-3,
            save_strategy="steps", save_steps=5, seed=3, data_seed=data_seed, use_cpu=True, disable_tqdm=True,
            report_to="none", group_by_pair_length=sampler == "length",
            batch_sampler="no_duplicates" if nodup else "batch_sampler")
        loss = MultipleNegativesRankingLoss(model) if nodup else ListNetLoss(model)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=loss,
                                      callbacks=[Crash(crash_at)] if crash_at else [])
        class Recording:  # the trainer's collator, noting each batch's queries
            def __getattr__(self, name):
                return getattr(collate, name)

            def __call__(self, rows):
                seen.append([r["query"] for r in rows])
                return collate(rows)

        collate, trainer.data_collator = trainer.data_collator, Recording()
        trainer.train(resume_from_checkpoint=resume)
        return model, seen

    whole, order = run("whole")
    with pytest.raises(KeyboardInterrupt):
        run("crashed", crash_at=15)
    resumed, resumed_order = run("crashed", resume=str(tmp_path / "crashed" / "checkpoint-15"))
    assert resumed_order == order[15:]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert run("other-data-seed", data_seed=4)[1] != order


def test_wrong_format_for_loss_is_explained(toy_data, tiny_model_dir):
    import datasets

    from fastrank import CrossEncoder
    from fastrank.data import read_groups, to_pairs
    from fastrank.losses import ListNetLoss
    from fastrank.training import CrossEncoderTrainer

    model = CrossEncoder(tiny_model_dir, device="cpu")
    ds = datasets.Dataset.from_dict(to_pairs(read_groups(toy_data / "train.jsonl")))
    with pytest.raises(DataError, match=r"ListNetLoss expects the 'lists' format .* data_format='lists'"):
        CrossEncoderTrainer(model=model, train_dataset=ds, loss=ListNetLoss(model))


def test_failed_training_leaves_no_model_dir(toy_data, tiny_model_dir, tmp_path, monkeypatch):
    from fastrank.training import recipe, trainer

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.CrossEncoderTrainer, "train", boom)
    with pytest.raises(KeyboardInterrupt):
        recipe.train(_config(toy_data, tiny_model_dir, tmp_path / "model"))
    assert not (tmp_path / "model").exists()


def test_bad_inputs(toy_data, tiny_model_dir, tmp_path):
    from fastrank.errors import ModelLoadError
    from fastrank.training.recipe import train

    with pytest.raises(ModelLoadError, match="does not exist"):
        train(_config(toy_data, tmp_path / "no-such-model", tmp_path / "m"))
    with pytest.raises(ValueError, match="max_length must be an integer"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "m", max_length=100000))
    with pytest.raises(ValueError, match="known losses"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "m", loss="nope"))
    assert not (tmp_path / "m").exists()


def test_distillation_format_trains_toward_teacher(toy_data, tiny_model_dir, tmp_path):
    """Teacher scores in the data (as fastrank mine --teacher writes them) + MarginMSE: the student learns them."""
    from fastrank.data import read_groups, write_groups
    from fastrank.training.recipe import train

    groups = read_groups(toy_data / "train.jsonl")
    for g in groups:
        g.scores = [4.0 * y - 2.0 for y in g.labels]  # teacher: +2 for the relevant document, -2 otherwise
    path = write_groups(groups, tmp_path / "distill.jsonl")
    result = train(_config(toy_data, tiny_model_dir, tmp_path / "model", data=str(path), loss="margin-mse",
                           epochs=6))
    assert result["eval_after"]["metrics"]["map"] > result["eval_before"]["metrics"]["map"] + 0.2


def test_mined_negatives_are_added_to_the_training_lists(toy_data, tiny_model_dir, tmp_path, monkeypatch):
    import numpy as np

    import fastrank.embedding
    from fastrank.training.recipe import train

    class Embedder:  # deterministic stand-in for MiniLM: hashes words into 16 dims
        name_or_path, max_length, pooling, normalize, dimension = "toy", 32, "mean", True, 16
        applied_prompts = {"query": "", "document": ""}

        def __init__(self, *a, **k):
            pass

        def encode(self, texts, batch_size=64, show_progress_bar=None):
            out = np.zeros((len(texts), 16), dtype=np.float32)
            for i, t in enumerate(texts):
                for w in t.split():
                    out[i, hash(w) % 16] += 1
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    monkeypatch.setattr(fastrank.embedding, "EmbeddingModel", Embedder)
    result = train(_config(toy_data, tiny_model_dir, tmp_path / "m", epochs=1, mine_negatives=2,
                           mining_options={"range_max": 20}))
    assert result["train_pairs_per_epoch"] == 96 * (5 + 2)  # 2 new negatives per list, none of its own again
    assert result["mining"]["corpus_size"] > 5 and result["mining"]["queries_without_positive_skipped"] == 0
    answers = train(_config(toy_data, tiny_model_dir, tmp_path / "a", epochs=1, answer_negatives=3))
    # every toy query has 5 documents; 3 other queries' positives each (the margin leaves enough of them)
    assert answers["train_pairs_per_epoch"] == 96 * (5 + 3)
    assert answers["mining"]["answer_negatives_added"] == 96 * 3 and answers["mining"]["answer_pool"] == len(WORDS)


def test_mined_negatives_go_to_their_own_query_when_two_share_a_text(toy_data, tiny_model_dir, tmp_path,
                                                                      monkeypatch):
    import fastrank.embedding
    from fastrank.data import QueryGroup
    from fastrank.training.recipe import _add_mined_negatives

    class Embedder:  # queries and answers ("wrote") at similarity 1, every other text at 0.6
        name_or_path, max_length, pooling, normalize, dimension = "flat", 8, "mean", True, 2

        def __init__(self, *a, **k):
            pass

        def encode(self, texts, batch_size=64, show_progress_bar=None):
            return np.asarray([[1.0, 0.0] if "wrote" in t else [0.6, 0.8] for t in texts], dtype=np.float32)

    monkeypatch.setattr(fastrank.embedding, "EmbeddingModel", Embedder)
    groups = [QueryGroup("who wrote it", ["Alice wrote it", "a"], [1.0, 0.0], "A"),
              QueryGroup("no positive here", ["x"], [0.0], "N"),
              QueryGroup("who wrote it", ["Bob wrote it", "b"], [1.0, 0.0], "B")]
    _add_mined_negatives(groups, _config(toy_data, tiny_model_dir, tmp_path / "m", mine_negatives=1), Embedder())
    assert [g.query_id for g in groups] == ["A", "N", "B"]
    assert groups[0].positives == ["Alice wrote it"] and groups[2].positives == ["Bob wrote it"]
    assert groups[0].documents[:2] == ["Alice wrote it", "a"] and len(groups[0].documents) == 3
    assert groups[2].documents[:2] == ["Bob wrote it", "b"] and len(groups[2].documents) == 3
    assert groups[1].documents == ["x"]
    # a positive of the same query text is no negative for its twin (it is the likeliest false negative)
    assert "Alice wrote it" not in groups[2].documents and "Bob wrote it" not in groups[0].documents


def test_the_embedding_model_and_its_prompts_mine_the_negatives(toy_data, tiny_model_dir, tmp_path):
    """first_stage_model / first_stage_prompts (train --embedding-model / --query-prompt) are what mining uses."""
    from fastrank.data import read_groups
    from fastrank.embedding import EmbeddingModel
    from fastrank.mining import mine_hard_negatives
    from fastrank.training.recipe import _add_mined_negatives, _embedding_model, train

    config = _config(toy_data, tiny_model_dir, tmp_path / "m", epochs=1, mine_negatives=2,
                     mining_options={"range_max": 20}, first_stage_model=str(tiny_model_dir),
                     first_stage_prompts={"query": "which animal is it: "})
    embedder = _embedding_model(config)
    assert embedder.name_or_path == str(tiny_model_dir) and embedder.query_prompt == "which animal is it: "
    groups = read_groups(toy_data / "train.jsonl")[:30]
    _add_mined_negatives(groups, config, embedder)

    def mined_by(model):
        result = mine_hard_negatives(read_groups(toy_data / "train.jsonl")[:30], model, num_negatives=2,
                                     keep_original_negatives=True, seed=config.seed, range_max=20,
                                     show_progress_bar=False)
        return [g.documents for g in result.groups]

    prompted = mined_by(EmbeddingModel(str(tiny_model_dir), prompts={"query": "which animal is it: "}))
    assert [g.documents for g in groups] == prompted
    assert prompted != mined_by(EmbeddingModel(str(tiny_model_dir)))  # the prompt changed what was mined
    result = train(config)
    assert result["embedding_prompts"] == {"query": "which animal is it: ", "document": ""}
    card = (tmp_path / "m" / "README.md").read_text()
    assert f"| embedding_model | {tiny_model_dir} |" in card and "which animal is it: " in card


def test_embedding_model_options_need_a_use(toy_data, tiny_model_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fastrank.cli import app
    from fastrank.training.recipe import train

    with pytest.raises(ValueError, match="first_stage_prompts are for the embedding model, which only "):
        train(_config(toy_data, tiny_model_dir, tmp_path / "p", first_stage_prompts={"query": "q: "}))
    with pytest.raises(ValueError, match=r"first_stage_prompts must be None .* got \{'passage': 'p: '\}"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "p", mine_negatives=1,
                      first_stage_prompts={"passage": "p: "}))
    args = ["train", "--data", str(toy_data / "train.jsonl"), "--out", str(tmp_path / "c"), "--base",
            str(tiny_model_dir), "--embedding-model", str(tiny_model_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "give one of those too" in str(result.exception) + result.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "p").exists()
    seen = []
    monkeypatch.setattr("fastrank.training.recipe.train", lambda config: seen.append(config) or {})
    monkeypatch.setattr("fastrank.cli.train._report", lambda result, as_json: None)
    result = CliRunner().invoke(app, args + ["--mine-negatives", "2", "--query-prompt", "q: "])
    assert result.exit_code == 0, result.output
    assert seen[0].first_stage_model == str(tiny_model_dir) and seen[0].first_stage_prompts == {"query": "q: "}


def test_first_stage_prior_changes_training_and_is_recorded(toy_data, tiny_model_dir, tmp_path):
    from fastrank import CrossEncoder
    from fastrank.training.recipe import train

    pairs = [("tiger", "the tiger is good"), ("tiger", "the apple is bad")]
    train(_config(toy_data, tiny_model_dir, tmp_path / "plain", epochs=1, eval_data=None))
    result = train(_config(toy_data, tiny_model_dir, tmp_path / "prior", epochs=1,
                           first_stage_weight=5.0, first_stage_model=str(tiny_model_dir)))
    from fastrank.embedding import EmbeddingModel
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.losses.prior import EmbeddingPrior, PriorReranker

    # the report judges the score the model was trained for: logit + 5 x the first stage's score
    as_trained = PriorReranker(CrossEncoder(tmp_path / "prior", device="cpu"),
                               EmbeddingPrior(EmbeddingModel(str(tiny_model_dir))), 5.0)
    expected = RerankingEvaluator.from_jsonl(toy_data / "test.jsonl", ks=(10,)).evaluate(as_trained).metrics
    assert result["eval_after"]["metrics"] == pytest.approx(expected, abs=1e-6)
    plain = CrossEncoder(tmp_path / "plain", device="cpu").predict(pairs, activation="identity")
    prior = CrossEncoder(tmp_path / "prior", device="cpu").predict(pairs, activation="identity")
    assert np.abs(plain - prior).max() > 1e-4  # same seed and data: only the prior differs
    card = (tmp_path / "prior" / "README.md").read_text()
    assert "## First-stage prior" in card and "score = logit + 5.0 * the inner product" in card
    with pytest.raises(ValueError, match="first_stage_weight needs a listwise loss"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "bce", loss="bce", first_stage_weight=1.0,
                      first_stage_model=str(tiny_model_dir)))


def test_bad_settings_fail_before_the_model_loads(toy_data, tiny_model_dir, tmp_path, monkeypatch):
    import fastrank.model
    from fastrank.errors import FastrankError
    from fastrank.training.recipe import train

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(fastrank.model, "CrossEncoder", no_load)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    for kw, error, message in (({"loss": "nosuchloss"}, ValueError, "unknown loss 'nosuchloss'"),
                               ({"loss_options": {"temperature": 2}}, ValueError, "has no option.* temperature"),
                               ({"bf16": "maybe"}, ValueError, "bf16 must be 'auto', 'true' or 'false'"),
                               ({"out": str(tmp_path / "notes")}, FastrankError, "non-empty directory")):
        with pytest.raises(error, match=message):
            train(_config(toy_data, tiny_model_dir, kw.pop("out", tmp_path / "out"), **kw))
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep" and not (tmp_path / "out").exists()


def test_a_run_of_a_few_steps_is_warned_about(toy_data, tiny_model_dir, tmp_path, caplog, capsys):
    import logging

    from fastrank.training.recipe import train

    with caplog.at_level(logging.WARNING, logger="fastrank.training.recipe"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "short", epochs=0.5, eval_data=None))
    assert "'loss'" not in capsys.readouterr().out  # no bar, no log dicts printed in its place either
    (record,) = [r for r in caplog.records if "optimizer step(s)" in r.getMessage()]
    assert record.getMessage().startswith("only 6 optimizer step(s) (96 lists rows, batch 8, 0.5 epochs)")


def test_a_resumed_run_counts_only_the_steps_it_trained(toy_data, tiny_model_dir, tmp_path):
    from fastrank.training.recipe import train

    ckpt = tmp_path / "ckpt"
    train(_config(toy_data, tiny_model_dir, tmp_path / "first", epochs=1, eval_data=None, checkpoint_dir=str(ckpt)))
    resumed = train(_config(toy_data, tiny_model_dir, tmp_path / "second", epochs=2, eval_data=None,
                            checkpoint_dir=str(ckpt), resume=True))
    assert resumed["resumed_from_step"] == 12  # 96 lists / batch 8 = 12 steps per epoch: the second epoch only
    assert resumed["epochs"] == 2 and "epochs_note" not in resumed  # whole epochs run as asked: nothing to say
    assert resumed["train_loss_note"] == ("train_loss and train_pairs_per_second cover steps 13-24, those this "
                                          "resumed call trained")
    again = train(_config(toy_data, tiny_model_dir, tmp_path / "third", epochs=2, eval_data=None,
                          checkpoint_dir=str(ckpt), resume=True))  # the checkpoint is the whole run (a crash at save)
    assert again["train_loss"] is None and again["train_pairs_per_second"] is None  # it said 0.0 for both
    assert again["train_loss_note"] == "the checkpoint held all 24 steps: nothing was left to train"
    from fastrank.errors import FastrankError

    with pytest.raises(FastrankError, match=r"checkpoint-24 has trained 24 optimizer steps \(2 epochs\), more than "
                                            r"--epochs 1.5 makes; give --epochs 2 or more \(more trains on from it\)"):  # it saved the 2-epoch model as 1.5 epochs
        train(_config(toy_data, tiny_model_dir, tmp_path / "fewer", epochs=1.5, eval_data=None,
                      checkpoint_dir=str(ckpt), resume=True))
    assert not (tmp_path / "fewer").exists()


def test_resume_skips_an_unfinished_checkpoint_and_refuses_other_settings(toy_data, tiny_model_dir, tmp_path, caplog,
                                                                          monkeypatch):
    """A run stopped while writing checkpoint-N leaves it without trainer_state.json: resume continues from the one
    before (it failed on the missing file). Resuming with other settings or data is refused, naming them (it went
    on with the old optimizer and schedule while the card recorded the new ones); only epochs may change. A fresh
    run first removes an earlier run's checkpoints, and a damaged checkpoint file is named."""
    from fastrank.errors import FastrankError
    from fastrank.training.recipe import RUN_RECORD, train

    ckpt = tmp_path / "ckpt"
    first = _config(toy_data, tiny_model_dir, tmp_path / "first", epochs=1, eval_data=None, checkpoint_dir=str(ckpt))
    train(first)
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-12", RUN_RECORD]
    unfinished = ckpt / "checkpoint-24"  # what a stop during the second epoch's save leaves: weights, no state
    unfinished.mkdir()
    (unfinished / "model.safetensors").write_bytes((ckpt / "checkpoint-12" / "model.safetensors").read_bytes())

    def again(out: str, **kw):
        return _config(toy_data, tiny_model_dir, tmp_path / out, eval_data=None, checkpoint_dir=str(ckpt),
                       resume=True, **{"epochs": 2, **kw})

    with pytest.raises(FastrankError, match=r"other settings \(lr 0.003 -> 0.01; seed 12 -> 5\); resume with that "
                                            r"run's settings \(only --epochs may change\)"):
        train(again("changed", lr=1e-2, seed=5))
    other_data = tmp_path / "other.jsonl"
    other_data.write_text((toy_data / "train.jsonl").read_text().replace("tiger", "lion"))
    with pytest.raises(FastrankError, match=r"other settings \(what data holds\)"):
        train(again("moved", data=str(other_data)))
    monkeypatch.chdir(toy_data)  # the same data and base, named by relative paths: the same run
    with caplog.at_level("WARNING", logger="fastrank.training.recipe"):
        resumed = train(again("second", data="train.jsonl", base=str(Path(os.path.relpath(tiny_model_dir)))))
    assert resumed["resumed_from_step"] == 12 and "checkpoint-24: it was not finished" in caplog.text
    assert (ckpt / "checkpoint-24" / "trainer_state.json").is_file()  # written again, by the resumed run
    train(_config(toy_data, tiny_model_dir, tmp_path / "fresh", epochs=1, eval_data=None, checkpoint_dir=str(ckpt),
                  lr=1e-2))  # afresh: the earlier run's checkpoint-24 goes, this run's checkpoint-12 stays
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-12", RUN_RECORD]
    assert json.loads((ckpt / RUN_RECORD).read_text())["settings"]["lr"] == 1e-2
    optimizer = ckpt / "checkpoint-12" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:-100])
    with pytest.raises(FastrankError, match=r"checkpoint-12 is damaged: optimizer.pt \(.*\) cannot be read"):
        train(again("damaged", lr=1e-2))


@pytest.fixture(scope="module")
def encoder_base(tmp_path_factory):
    """A tiny BERT encoder without a classification head (as an embedding base is): CrossEncoder adds a fresh one."""
    import torch
    from conftest import _tokenizer_source
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-encoder")
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         initializer_range=0.2)).save_pretrained(path)
    AutoTokenizer.from_pretrained(_tokenizer_source()).save_pretrained(path)
    return path


def _graded(path, labels: list, n: int = 4):
    """``n`` queries whose documents carry ``labels`` (class ids, or anything else a test feeds the loss)."""
    rows = [{"query": w, "documents": [f"the {w} is good", f"the {w} is ok", "a bad one"][:len(labels)],
             "labels": labels} for w in WORDS[:n]]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_ce_trains_as_many_classes_as_the_data_has(toy_data, encoder_base, tmp_path):
    """--loss ce on a base without a head: one logit per class of the data (0/1 here: 2), trained, evaluated each
    epoch and before/after by the last class's probability, saved with its label count."""
    from fastrank import CrossEncoder
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.training.recipe import train

    result = train(_config(toy_data, encoder_base, tmp_path / "ce", loss="ce", epochs=1, batch_size=16,
                           eval_each_epoch=True))
    saved = CrossEncoder(tmp_path / "ce", device="cpu")
    assert saved.num_labels == 2 and saved.activation == "identity"
    expected = RerankingEvaluator.from_jsonl(toy_data / "test.jsonl", ks=(10,)).evaluate(saved)
    assert result["eval_after"]["metrics"] == pytest.approx(expected.metrics, abs=1e-6)
    assert result["eval_after"]["metrics"]["map"] > result["eval_before"]["metrics"]["map"] + 0.2
    probs = saved.predict([("tiger", "the tiger is good"), ("tiger", "the apple is bad")], activation="softmax")
    assert probs.shape == (2, 2) and probs[0, 1] > probs[1, 1]
    card = (tmp_path / "ce" / "README.md").read_text()
    assert "| num labels | 2 |" in card and "| ranking score | softmax probability of the last class" in card
    assert "ordered by the last of the 2 classes' softmax probability" in card
    ranked = saved.rank("tiger", ["the apple is bad", "the tiger is good"])  # rank() orders by that probability
    assert [r.index for r in ranked] == [1, 0] and ranked[0].score == pytest.approx(float(probs[0, 1]), abs=1e-6)

    graded = train(_config(toy_data, encoder_base, tmp_path / "graded", loss="ce", epochs=1, eval_data=None,
                           data=str(_graded(tmp_path / "g.jsonl", [2, 1, 0]))))
    assert CrossEncoder(graded["output_dir"], device="cpu").num_labels == 3


def test_ce_keeps_a_base_head_that_fits(toy_data, tiny_model_factory, tmp_path):
    """A 2-label cross-encoder base trains with --loss ce on 0/1 labels as it is (no size-mismatch error)."""
    from fastrank import CrossEncoder
    from fastrank.training.recipe import train

    two = tiny_model_factory(2)
    before = CrossEncoder(two, device="cpu").predict([("tiger", "the tiger is good")])
    result = train(_config(toy_data, two, tmp_path / "two", loss="ce", epochs=0.5))
    after = CrossEncoder(tmp_path / "two", device="cpu")
    assert after.num_labels == 2 and "map" in result["eval_after"]["metrics"]
    assert np.abs(after.predict([("tiger", "the tiger is good")]) - before).max() > 1e-4


def test_labels_and_heads_that_do_not_fit_the_loss_fail_before_the_model_loads(toy_data, tiny_model_dir,
                                                                                tiny_model_factory, tmp_path,
                                                                                monkeypatch):
    import fastrank.model
    from fastrank.errors import LossConfigError
    from fastrank.training.recipe import train

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the labels and the base's head were checked")

    monkeypatch.setattr(fastrank.model, "CrossEncoder", no_load)
    two, three_classes = tiny_model_factory(2), _graded(tmp_path / "three.jsonl", [2, 1, 0])
    cases = [
        ({"loss": "ce", "data": str(_graded(tmp_path / "f.jsonl", [1, 0.5]))}, DataError,
         r"--loss ce \(CrossEntropyLoss\) needs class ids as labels \(whole numbers 0, 1, \.\.\., C-1\), but query "
         r"'apple' has label 0\.5; for graded or float relevance scores use bce, mse or a listwise loss"),
        ({"loss": "ce", "data": str(_graded(tmp_path / "n.jsonl", [1, -1]))}, DataError, "has label -1;"),
        ({"loss": "ce", "data": str(_graded(tmp_path / "z.jsonl", [0, 0]))}, DataError,
         "needs at least two classes .* every label in the data is 0"),
        ({"loss": "ce", "data": str(three_classes), "base": str(two)}, LossConfigError,
         r"--loss ce: the data has 3 classes \(labels 0\.\.2\) but the base '.*' is a cross-encoder checkpoint with "
         r"2 label\(s\); train from a base model without a classification head"),
        ({"loss": "ce", "base": str(tiny_model_dir)}, LossConfigError, r"checkpoint with 1 label\(s\); train"),
        ({"loss": "ce", "base": str(tiny_model_factory(4))}, LossConfigError,
         r"the data has 2 classes \(labels 0\.\.1\) but the base .* with 4 label\(s\); the model ranks by its last "
         r"class \(3\), which no label of the data would train; .* from a checkpoint with exactly 2 labels"),
        ({"loss": "listnet", "base": str(two)}, LossConfigError,
         "--loss listnet trains one relevance logit, but the base .* is a cross-encoder checkpoint with 2 labels; "
         "train its classes with --loss ce"),
    ]
    for kw, error, message in cases:
        with pytest.raises(error, match=message):
            train(_config(toy_data, kw.pop("base", tiny_model_dir), tmp_path / "out", **kw))
    assert not (tmp_path / "out").exists()


def test_the_epochs_run_are_reported_not_the_epochs_asked(toy_data, tiny_model_dir, tmp_path):
    """0.1 epochs of 30 queries in batches of 8 (4 steps an epoch) is one step, 0.25 epochs: said so everywhere."""
    from typer.testing import CliRunner

    from fastrank.cli import app

    data = tmp_path / "thirty.jsonl"
    data.write_text("\n".join(json.dumps(g) for g in _toy_groups(30, 2)) + "\n")
    out = tmp_path / "short"
    args = ["train", "--data", str(data), "--out", str(out), "--base", str(tiny_model_dir), "--epochs", "0.1",
            "--bf16", "false", "--max-length", "32"]
    result = CliRunner().invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    note = "asked 0.1: one optimizer step is 0.25 epochs of this data"
    assert report["epochs"] == 0.25 and report["epochs_note"] == note and report["config"]["epochs"] == 0.1
    assert f"| epochs | 0.25 ({note}) |" in (out / "README.md").read_text()
    text = CliRunner().invoke(app, args[:4] + [str(tmp_path / "again")] + args[5:])
    assert text.exit_code == 0, text.output
    assert f"trained on 30 rows for 0.25 epochs ({note}) in " in text.stdout


def test_resume_without_a_checkpoint_fails_before_anything_happens(toy_data, tiny_model_dir, tmp_path, monkeypatch):
    import fastrank.model
    from fastrank.errors import FastrankError
    from fastrank.training.recipe import train

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before --resume was checked")

    monkeypatch.setattr(fastrank.model, "CrossEncoder", no_load)
    with pytest.raises(FastrankError, match=r"^--resume: no complete checkpoint in .*o1\.checkpoints \(a run that "
                                            r"saved at least one epoch writes one\); drop --resume to start afresh$"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "o1", resume=True))
    (tmp_path / "ckpt").mkdir()  # an existing but empty checkpoint directory holds nothing to resume either
    with pytest.raises(FastrankError, match=r"--resume: no complete checkpoint in .*ckpt \("):
        train(_config(toy_data, tiny_model_dir, tmp_path / "o2", resume=True, checkpoint_dir=str(tmp_path / "ckpt")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize(("kw", "message"), [
    ({"max_documents": -1}, "max_documents must be None (keep every document of a list) or an integer >= 1 (the most "
                            "documents per training list), got -1"),
    ({"max_documents": 0}, "max_documents must be None (keep every document of a list) or an integer >= 1"),
    ({"max_documents": 2.5}, "max_documents must be None (keep every document of a list) or an integer >= 1"),
    ({"weight_decay": -1}, "weight_decay must be a finite number >= 0 (0 = no weight decay), got -1"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
    ({"epochs": float("inf")}, "epochs must be a finite number > 0 (fractions train part of an epoch), got inf"),
    ({"epochs": 0}, "epochs must be a finite number > 0"),
    ({"epochs": "3"}, "epochs must be a finite number > 0 (fractions train part of an epoch), got '3'"),
    ({"warmup_ratio": 1.0}, "warmup_ratio must be a fraction of the optimizer steps in [0, 1), e.g. 0.1 = the first "
                            "10% of the steps warm the learning rate up, got 1.0"),
    ({"warmup_ratio": 5.0}, "warmup_ratio must be a fraction of the optimizer steps in [0, 1)"),
    ({"warmup_ratio": -0.1}, "warmup_ratio must be a fraction of the optimizer steps in [0, 1)"),
    ({"lr": float("inf")}, "lr must be a finite number > 0, e.g. 1e-4, got inf"),
    ({"lr": 0.0}, "lr must be a finite number > 0, e.g. 1e-4, got 0.0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": 8.0}, "batch_size must be an integer >= 1, got 8.0"),
    ({"mine_negatives": -1}, "mine_negatives must be an integer >= 0 (0 = none), got -1"),
    ({"mine_negatives": 60}, "mine_negatives=60 is more than the 50 documents negatives are mined from (each "
                             "query's top 50 by the embedding model, mining_options range_max): ask for at most 50"),
    ({"mine_negatives": 2, "mining_options": {"sampling": "best"}}, "mine_negatives=2 with mining_options "
                                                                    "{'sampling': 'best'}: sampling must be one of"),
    ({"first_stage_weight": -1.0}, "first_stage_weight must be a finite number >= 0 (0 = no first-stage prior)"),
    ({"first_stage_weight": 1.0, "loss": "bce"}, "first_stage_weight needs a listwise loss ("),
])
def test_bad_numbers_fail_before_anything_loads(toy_data, tiny_model_dir, tmp_path, monkeypatch, kw, message):
    """Each setting that cannot train is refused up front, naming it and what is accepted: no reading of the data
    and no model load (where they used to fail deep inside, train silently, or overflow)."""
    import re

    import fastrank.data
    import fastrank.model
    from fastrank.training.recipe import train

    def no_load(*args, **kwargs):
        raise AssertionError("data or model was loaded before the settings were checked")

    monkeypatch.setattr(fastrank.model, "CrossEncoder", no_load)
    monkeypatch.setattr(fastrank.data, "read_groups", no_load)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "out", **kw))
    assert not (tmp_path / "out").exists()


def test_accepted_edge_values_pass_the_checks(toy_data, tiny_model_dir, tmp_path):
    """None, numpy integers and a zero warm-up or weight decay are valid (README and CLI give max_documents=None)."""
    config = _config(toy_data, tiny_model_dir, tmp_path / "out", max_documents=None, weight_decay=0,
                     warmup_ratio=0.0, batch_size=np.int64(8), epochs=0.5)
    config.check()
    _config(toy_data, tiny_model_dir, tmp_path / "out", max_documents=np.int64(1), warmup_ratio=0.99).check()


def test_an_evaluator_that_would_never_run_is_warned_about(toy_data, tiny_model_dir, tmp_path, caplog):
    import datasets

    from fastrank import CrossEncoder, CrossEncoderTrainingArguments, RerankingEvaluator
    from fastrank.data import read_groups, to_lists
    from fastrank.losses import ListNetLoss
    from fastrank.training import CrossEncoderTrainer

    model = CrossEncoder(tiny_model_dir, device="cpu")
    ds = datasets.Dataset.from_dict(to_lists(read_groups(toy_data / "train.jsonl")))
    evaluator = RerankingEvaluator.from_jsonl(toy_data / "test.jsonl", ks=(10,))
    for strategy, warned in (("no", True), ("epoch", False)):
        caplog.clear()
        args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / strategy), eval_strategy=strategy,
                                             use_cpu=True, report_to=[])
        with caplog.at_level("WARNING", logger="fastrank.training.trainer"):
            CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=ListNetLoss(model), evaluator=evaluator)
        assert ("it runs only when trainer.evaluate() is called" in caplog.text) is warned


# ------------------------------------------------------------------- porting sentence-transformers training code
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.37])
def test_warmup_ratio_gives_sentence_transformers_warmup_steps(tiny_model_dir, tmp_path, ratio):
    import datasets
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments as STArgs

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    ours = CrossEncoderTrainingArguments(output_dir=str(tmp_path), warmup_ratio=ratio)
    theirs = STArgs(output_dir=str(tmp_path), warmup_ratio=ratio)
    assert ours.warmup_steps == theirs.warmup_steps == ratio
    for steps in (7, 100, 333):
        assert ours.get_warmup_steps(steps) == theirs.get_warmup_steps(steps)
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    ds = datasets.Dataset.from_dict({"query": ["a"] * 4, "document": ["b"] * 4, "label": [1.0] * 4})
    trainer = CrossEncoderTrainer(model=model, args=ours, train_dataset=ds)
    trainer.create_optimizer_and_scheduler(num_training_steps=40)
    factors = [trainer.lr_scheduler.lr_lambdas[0](step) for step in range(41)]
    warmup = theirs.get_warmup_steps(40)
    assert all(f < 1 for f in factors[:warmup]) and factors[warmup] == 1.0


@pytest.mark.parametrize("kw, message", [
    ({"warmup_ratio": 1.0}, r"warmup_ratio must be a fraction of the optimizer steps in \[0, 1\).*got 1.0"),
    ({"warmup_ratio": -0.1}, r"warmup_ratio must be a fraction .*got -0.1"),
    ({"warmup_ratio": 0.1, "warmup_steps": 5}, r"set either warmup_ratio \(0.1\) or warmup_steps \(5\), not both"),
    ({"batch_sampler": "group_by_label"}, r"batch_sampler='group_by_label' is not supported; fastrank supports "
                                          r"'batch_sampler' .* and 'no_duplicates'"),
    ({"multi_dataset_batch_sampler": "other"}, "multi_dataset_batch_sampler='other' is not supported"),
    ({"prompts": {"a": "query: "}}, r"prompts maps datasets \['a'\] to prompts, but fastrank trains on one dataset"),
    ({"router_mapping": {"query": "q"}}, "router_mapping is not supported .*no Router module"),
    ({"learning_rate_mapping": {"classifier": 1e-3}}, r"learning_rate_mapping is not supported .*optimizers="),
])
def test_sentence_transformers_arguments_that_fastrank_cannot_honour_fail_clearly(tmp_path, kw, message):
    from fastrank.training import CrossEncoderTrainingArguments

    with pytest.raises(ValueError, match=message):
        CrossEncoderTrainingArguments(output_dir=str(tmp_path), **kw)


def test_sentence_transformers_default_arguments_are_accepted(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments as STArgs
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers, MultiDatasetBatchSamplers

    from fastrank.training import CrossEncoderTrainingArguments

    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path), batch_sampler=BatchSamplers.NO_DUPLICATES, prompts=None, router_mapping={},
        learning_rate_mapping={}, multi_dataset_batch_sampler=MultiDatasetBatchSamplers.ROUND_ROBIN)
    assert (args.batch_sampler, args.multi_dataset_batch_sampler) == ("no_duplicates", "round_robin")
    assert CrossEncoderTrainingArguments(output_dir=str(tmp_path)).batch_sampler == "batch_sampler"
    assert "group_by_pair_length=True" in CrossEncoderTrainingArguments.__doc__
    import dataclasses

    st_only = {f.name for f in dataclasses.fields(STArgs)} - {f.name for f in dataclasses.fields(args)}
    assert not st_only
    # the same code with its import changed to fastrank: the enums carry sentence-transformers' names and values
    import fastrank

    assert {m.name: m.value for m in fastrank.BatchSamplers} == {m.name: m.value for m in BatchSamplers}
    assert {m.name: m.value for m in fastrank.MultiDatasetBatchSamplers} == \
        {m.name: m.value for m in MultiDatasetBatchSamplers}
    ported = CrossEncoderTrainingArguments(output_dir=str(tmp_path), batch_sampler=fastrank.BatchSamplers.NO_DUPLICATES,
                                           multi_dataset_batch_sampler=fastrank.MultiDatasetBatchSamplers.ROUND_ROBIN)
    assert (ported.batch_sampler, ported.multi_dataset_batch_sampler) == ("no_duplicates", "round_robin")
    with pytest.raises(ValueError, match="batch_sampler=.*group_by_label.* is not supported"):
        CrossEncoderTrainingArguments(output_dir=str(tmp_path), batch_sampler=fastrank.BatchSamplers.GROUP_BY_LABEL)


@pytest.mark.parametrize("columns", [("question", "answer", "label"), ("sentence1", "sentence2", "score"),
                                     ("premise", "hypothesis", "label")])
def test_sentence_transformers_pair_columns_go_by_position(tiny_model_dir, tmp_path, columns):
    import datasets

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    a, b, label = columns
    ds = datasets.Dataset.from_dict({a: ["tiger", "apple"] * 4, b: ["the tiger is good", "a stone"] * 4,
                                     label: [1.0, 0.0] * 4})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=4,
                                         save_strategy="no", disable_tqdm=True, use_cpu=True)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, eval_dataset={"dev": ds})
    assert trainer.train_dataset.column_names == ["query", "document", label]
    assert trainer.eval_dataset["dev"].column_names == ["query", "document", label]
    assert trainer.data_collator.label_column == label
    assert trainer.train_dataset["query"] == ds[a] and trainer.train_dataset["document"] == ds[b]
    assert np.isfinite(trainer.train().training_loss)


@pytest.mark.parametrize("data, loss_name, names", [
    ({"question": ["tiger", "apple"] * 4, "answer": ["the tiger is good", "a red apple"] * 4,
      "hard": ["a stone", "the sea"] * 4}, "mnrl", ["query", "positive", "negative_1"]),
    ({"query": ["tiger", "apple"] * 4, "docs": [["the tiger is good", "a stone"], ["a red apple", "the sea"]] * 4,
      "labels": [[1, 0], [1, 0]] * 4}, "listnet", ["query", "documents", "labels"]),
])
def test_sentence_transformers_ntuple_and_list_columns_go_by_position(tiny_model_dir, tmp_path, data, loss_name,
                                                                        names):
    """sentence-transformers reads (anchor, positive, negatives...) and (query, docs, labels) by position."""
    import datasets

    from fastrank import CrossEncoder
    from fastrank.losses import get_loss
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    ds = datasets.Dataset.from_dict(data)
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=4,
                                         save_strategy="no", disable_tqdm=True, use_cpu=True)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=get_loss(loss_name, model))
    assert trainer.train_dataset.column_names == names
    assert [trainer.train_dataset[n] for n in names] == [ds[c] for c in ds.column_names]
    assert np.isfinite(trainer.train().training_loss)
    assert np.isfinite(trainer.evaluate(eval_dataset=ds)["eval_loss"])  # evaluate() reads it by position too


@pytest.mark.parametrize("data, loss_name, message", [
    ({"q": ["a"], "rel": [1], "doc": ["b"]}, None,
     "but train_dataset has columns ['q', 'rel', 'doc']. Rename them, e.g. dataset = dataset.rename_columns("
     "{'q': 'query', 'doc': 'document', 'rel': 'label'}) (order matters: query, document, label)"),
    ({"q": ["a"], "d": ["b"], "relevance": [1]}, None,
     "columns ['q', 'd', 'relevance']. Rename them, e.g. dataset = dataset.rename_columns({'q': 'query', 'd': "
     "'document', 'relevance': 'label'})"),
    ({"anchor": ["a"], "pos": ["b"], "weight": [1.0]}, "mnrl",  # a number among the texts: not read by position
     "dataset.rename_columns({'anchor': 'query', 'pos': 'positive'})"),
    ({"query": ["a"], "docs": [["b"]], "labels": [[1]], "source": ["x"]}, "listnet",
     "dataset.rename_columns({'docs': 'documents'})"),
    ({"id": ["Q1"], "question": ["a"], "answer": ["b"]}, "mnrl",  # an id column is never read as the query
     "has columns ['id', 'question', 'answer']"),
    ({"q": ["a"], "docs": [["b"]], "doc_ids": [["d1"]]}, "listnet", "has columns ['q', 'docs', 'doc_ids']"),
])
def test_columns_that_do_not_fit_name_themselves_and_the_rename(tiny_model_dir, data, loss_name, message):
    import datasets

    from fastrank import CrossEncoder
    from fastrank.losses import get_loss
    from fastrank.training import CrossEncoderTrainer

    model = CrossEncoder(tiny_model_dir, device="cpu")
    loss = get_loss(loss_name, model) if loss_name else None
    with pytest.raises(DataError) as info:
        CrossEncoderTrainer(model=model, train_dataset=datasets.Dataset.from_dict(data), loss=loss)
    assert message in str(info.value)


def test_no_duplicates_batches_repeat_no_text_and_train_mnrl(tiny_model_dir, tmp_path):
    import datasets
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from fastrank import CrossEncoder
    from fastrank.losses import MultipleNegativesRankingLoss
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    rng = random.Random(0)
    queries = [rng.choice(WORDS[:6]) for _ in range(60)]  # 6 distinct queries over 60 rows: plain batches repeat
    ds = datasets.Dataset.from_dict({"query": queries, "positive": [f"the {q} is good" for q in queries],
                                     "negative_1": [f"the {rng.choice(WORDS[6:])} is bad" for _ in queries]})
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)

    def batches(sampler: str) -> list[list[dict]]:
        args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                             num_train_epochs=1, save_strategy="no", disable_tqdm=True,
                                             batch_sampler=sampler, use_cpu=True)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds,
                                      loss=MultipleNegativesRankingLoss(model))
        out = [list(zip(*b["inputs"])) for b in trainer.get_train_dataloader()]
        if sampler == BatchSamplers.NO_DUPLICATES:
            assert np.isfinite(trainer.train().training_loss)
        return out

    def repeats(batch) -> bool:
        texts = [t for row in batch for t in row]
        return len(texts) != len(set(texts))

    plain, distinct = batches("batch_sampler"), batches(BatchSamplers.NO_DUPLICATES)
    assert any(repeats(b) for b in plain)
    assert sorted(r for b in distinct for r in b) == sorted(zip(*[ds[c] for c in ds.column_names]))
    assert [len(b) for b in distinct] == [4] * 15 and not any(repeats(b) for b in distinct)


def test_sentence_transformers_trainer_keywords(tiny_model_dir, tmp_path, caplog):
    import inspect

    import datasets
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainer as STTrainer
    from sentence_transformers.cross_encoder.data_collator import CrossEncoderDataCollator

    from fastrank import CrossEncoder
    from fastrank.losses import ListNetLoss
    from fastrank.training import CrossEncoderCollator, CrossEncoderTrainer, CrossEncoderTrainingArguments

    ours = list(inspect.signature(CrossEncoderTrainer.__init__).parameters)
    assert ours == list(inspect.signature(STTrainer.__init__).parameters)  # same names, same positions
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    ds = datasets.Dataset.from_dict({"query": ["a", "b"], "document": ["x", "y"], "label": [1.0, 0.0]})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), save_strategy="no")
    collator = CrossEncoderCollator(ds.column_names)
    with caplog.at_level("WARNING", logger="fastrank.training.trainer"):
        trainer = CrossEncoderTrainer(
            model=model, args=args, train_dataset=ds, data_collator=collator, processing_class=model.tokenizer,
            compute_metrics=lambda p: {}, preprocess_logits_for_metrics=lambda a, b: a,
            optimizer_cls_and_kwargs=(torch.optim.SGD, {"momentum": 0.5}))
    assert "compute_metrics is never called" in caplog.text
    assert trainer.data_collator is collator and trainer.processing_class is model.tokenizer
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.5
    assert isinstance(CrossEncoderTrainer(model=model, args=args, train_dataset=ds.select_columns(["query"])
                                          .add_column("documents", [["x"], ["y"]])
                                          .add_column("labels", [[1], [0]]), loss=ListNetLoss).loss, ListNetLoss)
    with pytest.raises(ValueError, match="data_collator=CrossEncoderDataCollator is not supported: fastrank's losses "
                                         "tokenize .*leave data_collator out"):
        CrossEncoderTrainer(model=model, args=args, train_dataset=ds,
                            data_collator=CrossEncoderDataCollator(preprocess_fn=model.tokenizer))
    with pytest.raises(ValueError, match="does not support model_init .*pass model=..., loss=..."):
        CrossEncoderTrainer(args=args, train_dataset=ds, model_init=lambda: model)
    with pytest.raises(ValueError, match="needs model="):
        CrossEncoderTrainer(args=args, train_dataset=ds)


def test_multi_dataset_training_is_refused_with_what_to_do(tiny_model_dir, tmp_path):
    import datasets

    from fastrank import CrossEncoder
    from fastrank.losses import BinaryCrossEntropyLoss, MSELoss
    from fastrank.training import CrossEncoderTrainer

    model = CrossEncoder(tiny_model_dir, device="cpu")
    ds = datasets.Dataset.from_dict({"query": ["a"], "document": ["x"], "label": [1.0]})
    both = datasets.DatasetDict({"nli": ds, "qa": ds})
    message = (r"multi-dataset training \(a DatasetDict / dict of datasets \['nli', 'qa'\] or a dict of losses\) is "
               r"not supported .*datasets.concatenate_datasets\(list\(dataset_dict.values\(\)\)\)")
    for loss in ({"nli": BinaryCrossEntropyLoss(model), "qa": MSELoss(model)}, None):
        with pytest.raises(ValueError, match=message):
            CrossEncoderTrainer(model=model, train_dataset=both, loss=loss)
    with pytest.raises(ValueError, match=r"dict of datasets \['qa'\] or a dict of losses"):
        CrossEncoderTrainer(model=model, train_dataset=ds, loss={"qa": MSELoss(model)})


def _extra_copies(rows, order, size) -> int:
    from collections import Counter

    return sum(c - 1 for i in range(0, len(order), size)
               for c in Counter(t for j in order[i:i + size] for t in rows[j]).values() if c > 1)


@pytest.mark.parametrize("seed", range(5))
def test_no_duplicates_sampler_spreads_repeated_queries_over_full_batches(seed):
    import torch

    from fastrank.training.sampler import NoDuplicatesSampler

    # 20 queries x 8 positives, batches of 16: 10 batches, each query fits in 8 of them, so no batch needs a repeat
    # (greedy filling, as sentence-transformers does, strands rows of the same query at the epoch's end).
    rows = [frozenset([f"q{q}", f"d{q}-{k}"]) for q in range(20) for k in range(8)]
    sampler = NoDuplicatesSampler(rows, 16, torch.Generator().manual_seed(seed))
    order = list(sampler)
    assert sorted(order) == list(range(len(rows))) and len(sampler) == len(rows)
    assert _extra_copies(rows, order, 16) == 0
    assert order == list(NoDuplicatesSampler(rows, 16, torch.Generator().manual_seed(seed)))  # seeded: repeatable
    assert order != list(sampler)  # a new epoch, a new order


def test_no_duplicates_sampler_repeats_only_what_must_repeat():
    import torch

    from fastrank.training.sampler import NoDuplicatesSampler

    # query 0 has 30 rows but there are only 7 batches (50 rows, size 8, the last batch short): it must repeat
    # at least 30 - 7 = 23 times; every other text fits.
    rows = [frozenset(["q0", f"a{k}"]) for k in range(30)] + [frozenset([f"q{k + 1}", f"b{k}"]) for k in range(20)]
    order = list(NoDuplicatesSampler(rows, 8, torch.Generator().manual_seed(0)))
    assert sorted(order) == list(range(50))
    assert _extra_copies(rows, order, 8) == 23
    assert NoDuplicatesSampler([], 8).plan() == []


def test_bf16_training_leaves_a_full_precision_model_and_evaluates_it(tiny_model_dir, tmp_path):
    import datasets
    import torch

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    pairs = [(f"what is {w}", f"the {w} is a thing of {WORDS[(i * 7) % len(WORDS)]}") for i, w in enumerate(WORDS)]

    def fp32_logits() -> np.ndarray:  # the inner Hugging Face model in fp32, which mixed precision never wraps
        features = model.tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                                   max_length=32, return_tensors="pt")
        was_training = model.model.training
        model.model.eval()  # no dropout, as predict
        try:
            with torch.no_grad():
                return model.model(**features).logits[:, 0].float().numpy()
        finally:
            model.model.train(was_training)

    seen: list[float] = []

    def evaluator(m) -> dict[str, float]:
        seen.append(float(np.abs(m.predict(pairs, activation="identity") - fp32_logits()).max()))
        return {"score": 0.0}

    ds = datasets.Dataset.from_dict({"query": [q for q, _ in pairs], "document": [d for _, d in pairs],
                                     "label": [float(i % 2) for i in range(len(pairs))]})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=1,
                                         save_strategy="no", eval_strategy="epoch", disable_tqdm=True, bf16=True,
                                         use_cpu=True, learning_rate=1e-3)
    CrossEncoderTrainer(model=model, args=args, train_dataset=ds, evaluator=evaluator).train()
    after = float(np.abs(model.predict(pairs, activation="identity") - fp32_logits()).max())
    # bf16 autocast scores were up to ~1e-2 off; full precision agrees to float rounding
    assert seen and max(seen) < 1e-5 and after < 1e-5


def test_train_refuses_an_output_that_holds_its_inputs(toy_data, tiny_model_factory, tmp_path, monkeypatch):
    import shutil

    import fastrank.model
    from fastrank.errors import FastrankError
    from fastrank.training.recipe import train

    base = tmp_path / "base"
    shutil.copytree(tiny_model_factory(1), base)  # a fastrank checkpoint: --out could otherwise replace it
    monkeypatch.setattr(fastrank.model, "CrossEncoder", lambda *a, **k: pytest.fail("loaded before --out was checked"))
    for out in (base, tmp_path):
        with pytest.raises(FastrankError, match=f"refusing to write over {out}: it holds the input"):
            train(_config(toy_data, base, out))
    with pytest.raises(FastrankError, match="it holds the input .*train.jsonl"):
        train(_config(toy_data, base, toy_data))
    assert sorted(p.name for p in base.iterdir()) == sorted(p.name for p in tiny_model_factory(1).iterdir())
    # a base restarted from the run's own checkpoints: the finished run would remove OUT.checkpoints with it
    inside = tmp_path / "run.checkpoints" / "checkpoint-4"
    shutil.copytree(base, inside)
    with pytest.raises(FastrankError, match="inside .*run.checkpoints, where training keeps its checkpoints"):
        train(_config(toy_data, inside, tmp_path / "run"))
    assert (inside / "config.json").is_file()
    from fastrank.training.recipe import _check_inputs_outside

    # an explicit checkpoint directory is kept: only its checkpoint-N folders rotate away
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "small.jsonl").write_text("{}")
    _check_inputs_outside(proj, [str(proj / "small.jsonl")], removed=False)
    with pytest.raises(FastrankError, match="the folder is removed when the run ends"):
        _check_inputs_outside(proj, [str(proj / "small.jsonl")], removed=True)
    with pytest.raises(FastrankError, match="older checkpoint-N folders are deleted"):
        _check_inputs_outside(tmp_path / "run.checkpoints", [str(inside)], removed=False)
    # an --out the final save would refuse (a model with an onnx/ export beside it) is refused before training
    model_dir = tmp_path / "m1"
    shutil.copytree(base, model_dir)
    (model_dir / "onnx").mkdir()
    with pytest.raises(FastrankError, match="it holds onnx/, which this save does not write"):
        train(_config(toy_data, base, model_dir))


def test_bad_labels_for_the_loss_fail_up_front_and_failures_leave_no_empty_checkpoint_dir(
        toy_data, tiny_model_dir, tmp_path, monkeypatch, caplog):
    import fastrank.losses
    from fastrank.data import QueryGroup
    from fastrank.training.recipe import _drop_lists_without_margin, train

    graded = _graded(tmp_path / "graded.jsonl", [2, 1, 0])
    with pytest.raises(DataError, match=r"--loss bce \(BinaryCrossEntropyLoss\) needs labels in \[0, 1\], but query "
                                        r"'.*' of .*graded.jsonl has label 2; for graded labels use mse"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "bce", loss="bce", data=str(graded)))
    groups = [QueryGroup("q1", ["a", "b"], [1.0, 0.0], "1"), QueryGroup("q2", ["c"], [1.0], "2")]
    with caplog.at_level("WARNING"):
        kept = _drop_lists_without_margin(_config(toy_data, tiny_model_dir, tmp_path / "m", loss="margin-mse"), groups)
    assert [g.query_id for g in kept] == ["1"] and "1 of 2 queries have a single document" in caplog.text
    assert _drop_lists_without_margin(_config(toy_data, tiny_model_dir, tmp_path / "m"), groups) == groups

    def boom(self, *args, **kwargs):
        raise RuntimeError("boom in the first batch")

    monkeypatch.setattr(fastrank.losses.ListNetLoss, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "failed"))
    assert not (tmp_path / "failed").exists() and not (tmp_path / "failed.checkpoints").exists()


def test_a_base_model_trained_in_memory_exports_without_the_untrained_head_opt_in(encoder_base, tmp_path):
    import datasets

    from fastrank import CrossEncoder
    from fastrank.export import export_model
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(encoder_base, device="cpu", max_length=32)
    assert model.head_initialized  # a base model: its head is fresh, export refuses it as it is
    ds = datasets.Dataset.from_dict({"query": ["tiger", "apple"] * 4, "document": ["the tiger", "a car"] * 4,
                                     "label": [1.0, 0.0] * 4})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / "ckpt"), per_device_train_batch_size=4,
                                         num_train_epochs=1, save_strategy="no", disable_tqdm=True, use_cpu=True)
    CrossEncoderTrainer(model=model, args=args, train_dataset=ds).train()
    assert not model.head_initialized
    assert export_model(model, tmp_path / "onnx", num_threads=1)["head_initialized"] is False


def test_evaluators_run_once_per_evaluation_as_a_list_and_write_under_output_dir(tiny_model_dir, toy_data, tmp_path):
    """sentence-transformers: a list of evaluators runs as one, the evaluator runs once per evaluation whatever the
    number of eval datasets, and gets output_dir/eval to write to; a plain evaluator(model) still works."""
    import datasets

    from fastrank import CrossEncoder
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    calls: list[str] = []

    def plain(m) -> dict[str, float]:
        calls.append("plain")
        return {"plain_score": 1.0}

    reranking = RerankingEvaluator.from_jsonl(toy_data / "test.jsonl", ks=(10,), name="dev")
    ds = datasets.Dataset.from_dict({"query": ["tiger", "apple"] * 4, "document": ["the tiger", "a stone"] * 4,
                                     "label": [1.0, 0.0] * 4})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=4,
                                         save_strategy="no", disable_tqdm=True, use_cpu=True)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, eval_dataset={"a": ds, "b": ds},
                                  evaluator=[plain, reranking])
    metrics = trainer.evaluate()
    assert calls == ["plain"]  # once, not once per eval dataset and once more
    assert {"eval_a_loss", "eval_b_loss", "eval_plain_score", "eval_dev_ndcg@10"} <= set(metrics)
    assert (tmp_path / "eval" / "RerankingEvaluator_dev_results.json").is_file()
    # sentence-transformers' SequentialEvaluator score: the last evaluator's primary metric (metric_for_best_model)
    assert reranking.primary_metric == "dev_map" and metrics["eval_sequential_score"] == metrics["eval_dev_map"]
    trainer.evaluator.evaluators = [reranking, plain, lambda m: 0.25]  # a bare number is evaluator_<i>
    metrics = trainer.evaluate()
    assert metrics["eval_evaluator_2"] == metrics["eval_sequential_score"] == 0.25
    trainer.evaluator = lambda m: {"eval_own": 0.5}  # prefixed already: not eval_eval_own
    assert "eval_own" in trainer.evaluate() and "eval_eval_own" not in trainer.evaluate()
    trainer.evaluator = lambda m: 0.75  # a bare number, as sentence-transformers takes it
    assert trainer.evaluate()["eval_evaluator"] == 0.75
    alone = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, evaluator=plain)
    assert alone.evaluate()["eval_plain_score"] == 1.0 and alone.evaluate()["eval_runtime"] >= 0
    with pytest.raises(ValueError, match=r"evaluate\(\) has nothing to evaluate: give the trainer an eval_dataset"):
        CrossEncoderTrainer(model=model, args=args, train_dataset=ds).evaluate()  # it returned {}


def test_one_evaluation_reaches_callbacks_once_with_loss_and_evaluator_metrics(tiny_model_dir, toy_data, tmp_path):
    """With an eval dataset and an evaluator, callbacks and the log see one evaluation holding both the loss and the
    evaluator's metrics (sentence-transformers merges them in its evaluation loop), so EarlyStoppingCallback can
    watch an evaluator metric; it was called twice, the first time without that metric."""
    import datasets
    from transformers import TrainerCallback

    from fastrank import CrossEncoder
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    seen: list[set[str]] = []

    class Record(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            seen.append(set(metrics))

    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    ds = datasets.Dataset.from_dict({"query": ["tiger", "apple"] * 4, "document": ["the tiger", "a stone"] * 4,
                                     "label": [1.0, 0.0] * 4})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=4,
                                         eval_strategy="epoch", save_strategy="no", disable_tqdm=True, use_cpu=True,
                                         report_to="none")
    evaluator = RerankingEvaluator.from_jsonl(toy_data / "test.jsonl", ks=(10,), name="dev")
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, eval_dataset=ds, evaluator=evaluator,
                                  callbacks=[Record()])
    trainer.train()
    assert len(seen) == 2  # one per epoch
    assert all({"eval_loss", "eval_dev_ndcg@10"} <= keys for keys in seen)
    logged = [row for row in trainer.state.log_history if "eval_loss" in row or "eval_dev_ndcg@10" in row]
    assert len(logged) == 2 and all("eval_loss" in row and "eval_dev_ndcg@10" in row for row in logged)
    seen.clear()
    assert set(trainer.evaluate(metric_key_prefix="test")) >= {"test_loss", "test_dev_ndcg@10"}
    assert len(seen) == 1


def test_gradient_checkpointing_trains_to_the_same_loss(tiny_model_dir, tmp_path):
    """TrainingArguments(gradient_checkpointing=True) (memory for compute, for large rerankers) reaches the same
    loss."""
    import datasets

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    ds = datasets.Dataset.from_dict({"query": ["tiger", "apple"] * 4, "document": ["the tiger", "a stone"] * 4,
                                     "label": [1.0, 0.0] * 4})
    losses = []
    for checkpointing in (False, True):
        model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
        args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / str(checkpointing)), num_train_epochs=1,
                                             per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True,
                                             use_cpu=True, seed=3, gradient_checkpointing=checkpointing)
        losses.append(CrossEncoderTrainer(model=model, args=args, train_dataset=ds).train().training_loss)
        flag = getattr(type(model.model), "is_activation_checkpointing", None)
        assert (model.model.is_activation_checkpointing if flag is not None
                else model.model.is_gradient_checkpointing) is checkpointing
    assert losses[1] == pytest.approx(losses[0], abs=1e-6)


def test_resume_counts_epochs_in_optimizer_steps(tmp_path):
    """A fractional --epochs rounds up to a whole step (1.3 epochs of 12 steps: 16 steps, epoch 1.3333 in the
    checkpoint), so the run's own --epochs must pass; it was refused, and so was the value its message advised."""
    from fastrank.errors import FastrankError
    from fastrank.training.recipe import _check_epochs_left

    (tmp_path / "trainer_state.json").write_text(json.dumps({"epoch": 16 / 12, "global_step": 16}))
    for epochs in (1.3, 1.26, 1.333, 2.0):
        _check_epochs_left(tmp_path, epochs)
    with pytest.raises(FastrankError, match=r"has trained 16 optimizer steps \(1.333 epochs\), more than --epochs "
                                            r"1.25 makes; give --epochs 1.333 or more") as caught:
        _check_epochs_left(tmp_path, 1.25)  # 15 steps
    _check_epochs_left(tmp_path, float(str(caught.value).split("give --epochs ")[1].split()[0]))


def test_training_prompts_open_every_query_as_if_written_into_the_data(tiny_model_dir, tmp_path, caplog):
    """``CrossEncoderTrainingArguments(prompts=...)`` trains exactly as the same prompt prepended to the query
    column (sentence-transformers' meaning); it was refused. A prompt the model does not score with is warned
    about, since its scores would come from inputs it was not trained on."""
    import datasets
    import torch

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderCollator, CrossEncoderTrainer, CrossEncoderTrainingArguments

    rows = {"query": ["tiger", "apple", "river", "cloud"] * 4,
            "document": ["the tiger is good", "the apple is bad", "the river is good", "the cloud is bad"] * 4,
            "label": [1.0, 0.0, 1.0, 0.0] * 4}
    plain = datasets.Dataset.from_dict(rows)
    written = datasets.Dataset.from_dict({**rows, "query": ["query: " + q for q in rows["query"]]})

    def trained(dataset, caplog_level="WARNING", **kw):
        torch.manual_seed(0)
        model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32, **kw.pop("model", {}))
        args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / "out"), save_strategy="no", max_steps=3,
                                             per_device_train_batch_size=4, learning_rate=1e-3, use_cpu=True,
                                             group_by_pair_length=False, seed=0, **kw)
        CrossEncoderTrainer(model=model, args=args, train_dataset=dataset).train()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    with caplog.at_level("WARNING", logger="fastrank.training.trainer"):
        prompted = trained(plain, prompts="query: ")
    assert "training with prompt 'query: ', but the model scores with its default prompt None" in caplog.text
    caplog.clear()
    by_hand = trained(written)
    assert torch.equal(prompted, by_hand)
    assert not torch.equal(prompted, trained(plain))  # the prompt reached the model
    with caplog.at_level("WARNING", logger="fastrank.training.trainer"):
        same = trained(plain, prompts="query: ", model={"prompts": {"q": "query: "}, "default_prompt_name": "q"})
    assert torch.equal(same, prompted) and "training with prompt" not in caplog.text  # trains as it scores
    batch = CrossEncoderCollator(["query", "documents", "labels"], prompt="q: ")(
        [{"query": "a", "documents": ["x", "y"], "labels": [1, 0]}])
    assert batch["inputs"] == [["a"], [["x", "y"]]] and batch["prompt"] == "q: "  # the texts as given (a prior's)
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32, prompts={"q": "q: "}, default_prompt_name="q")
    caplog.clear()
    with caplog.at_level("WARNING", logger="fastrank.training.trainer"):  # the collator's prompt is the one used
        CrossEncoderTrainer(model=model, args=CrossEncoderTrainingArguments(output_dir=str(tmp_path / "c")),
                            train_dataset=plain, data_collator=CrossEncoderCollator(plain.column_names, "q: "))
    assert "training with prompt" not in caplog.text
    with pytest.raises(TypeError, match="prompts must be a string put before every query"):
        CrossEncoderTrainingArguments(output_dir=str(tmp_path), prompts=3)


def test_train_prompt_trains_and_saves_the_prompt(toy_data, tiny_model_dir, tmp_path):
    """``fastrank train --prompt``: trained exactly as the prompt written into the data, and the saved model
    scores (and says on its card) with it."""
    import numpy as np
    import torch

    from fastrank import CrossEncoder
    from fastrank.training.recipe import train

    written = tmp_path / "written"
    written.mkdir()
    for name in ("train", "test"):
        rows = [json.loads(line) for line in (toy_data / f"{name}.jsonl").read_text().splitlines()]
        (written / f"{name}.jsonl").write_text("".join(json.dumps({**r, "query": "query: " + r["query"]}) + "\n"
                                                      for r in rows))
    prompted = train(_config(toy_data, tiny_model_dir, tmp_path / "prompted", epochs=1, prompt="query: "))
    by_hand = train(_config(written, tiny_model_dir, tmp_path / "by_hand", epochs=1))
    assert prompted["eval_after"]["metrics"] == by_hand["eval_after"]["metrics"]
    ours, theirs = CrossEncoder(tmp_path / "prompted", device="cpu"), CrossEncoder(tmp_path / "by_hand", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    assert ours.default_prompt == "query: " and theirs.default_prompt is None
    np.testing.assert_allclose(ours.predict([("tiger", "the tiger is good")]),
                               theirs.predict([("query: tiger", "the tiger is good")]), atol=1e-6)
    assert '`query`, "query: ", opens every query' in (tmp_path / "prompted" / "README.md").read_text()
    with pytest.raises(ValueError, match="prompt must be a string put before every query"):
        train(_config(toy_data, tiny_model_dir, tmp_path / "bad", prompt=3))


def test_resume_sees_a_change_of_the_bases_default_prompt(toy_data, tiny_model_dir, tmp_path):
    """A run without --prompt trains with its base's default prompt: a base re-saved with another one since is
    another run (its weights and config.json, all the record hashed, were the same)."""
    from fastrank import CrossEncoder
    from fastrank.errors import FastrankError
    from fastrank.training.recipe import RUN_RECORD, _check_same_run, _run_record

    base = tmp_path / "base"
    CrossEncoder(tiny_model_dir, device="cpu").save(base)
    before = _run_record(_config(toy_data, base, tmp_path / "out"), False)
    assert "base_prompt" not in before["settings"]  # a base without prompts: the record as before prompts
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / RUN_RECORD).write_text(json.dumps(before))
    CrossEncoder(base, device="cpu", prompts={"j": "Judge: "}, default_prompt_name="j").save(base)
    after = _run_record(_config(toy_data, base, tmp_path / "out"), False)
    assert after["settings"]["base_prompt"] == "Judge: " and after["inputs"] == before["inputs"]
    with pytest.raises(FastrankError, match=r"base_prompt None -> 'Judge: '"):
        _check_same_run(tmp_path / "ckpt", after)
    assert "base_prompt" not in _run_record(_config(toy_data, base, tmp_path / "out", prompt="q: "), False)["settings"]


def test_arguments_parse_from_the_command_line_and_every_column_is_kept(tiny_model_dir, tmp_path):
    """HfArgumentParser (a training script's flags) failed on ``str | list[str] | None`` fields ('isinstance()
    argument 2 cannot be a parameterized generic'); ``remove_unused_columns=True`` dropped the text columns the
    losses read (``KeyError: 'query'``)."""
    import datasets
    from transformers import HfArgumentParser

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    (args,) = HfArgumentParser(CrossEncoderTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--prompts", "query: ", "--remove_unused_columns", "true", "--max_steps", "2",
         "--per_device_train_batch_size", "2", "--save_strategy", "no", "--report_to", "none"])
    assert args.prompts == "query: " and args.remove_unused_columns is True and args.max_steps == 2
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32, prompts={"query": "query: "},
                         default_prompt_name="query")
    ds = datasets.Dataset.from_dict({"query": ["a", "b"], "document": ["x", "y"], "label": [1.0, 0.0]})
    output = CrossEncoderTrainer(model=model, args=args, train_dataset=ds).train()
    assert output.global_step == 2 and np.isfinite(output.training_loss)


def test_pushes_while_and_after_training_upload_a_whole_model_with_fastranks_card(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    """``push_to_hub=True`` uploaded each checkpoint's weights and config only (no tokenizer: the pushed model did
    not load), and ``trainer.push_to_hub()`` replaced fastrank's card with transformers' (and uploaded card data
    naming local paths). A stand-in hub API records what would be published."""
    import concurrent.futures
    import json
    import shutil

    import datasets
    import transformers.trainer

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    hub, commits = tmp_path / "hub", []

    class FakeApi:
        def create_repo(self, repo_id, token=None, private=None, exist_ok=False):
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message=None, token=None, run_as_future=False,
                          ignore_patterns=None, revision=None, path_in_repo=None):
            commits.append(commit_message)
            shutil.copytree(folder_path, hub / (path_in_repo or ""), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*(ignore_patterns or [])))
            done = concurrent.futures.Future()
            done.set_result(None)
            return done if run_as_future else None

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    model.card_data["evaluation"] = {"data": "base-eval.jsonl", "map": 0.5}  # of the base: dropped by training
    model.card_data["train_datasets"] = [str(tmp_path / "private" / "dev.jsonl")]  # a user's field: kept
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, save_strategy="steps",
                                         save_steps=1, per_device_train_batch_size=2, push_to_hub=True,
                                         hub_model_id="you/reranker", report_to="none")
    ds = datasets.Dataset.from_dict({"query": ["a", "b"], "document": ["x", "y"], "label": [1.0, 0.0]})
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds)
    trainer.train()
    assert any(c and c.startswith("Training in progress") for c in commits)
    for name in ("tokenizer.json", "config_sentence_transformers.json", "fastrank_card.json", "model.safetensors"):
        assert (hub / name).is_file(), name
    pairs = [("a", "x"), ("b", "y")]
    np.testing.assert_allclose(CrossEncoder(hub, device="cpu", max_length=32).predict(pairs), model.predict(pairs),
                               atol=1e-6)
    trainer.push_to_hub(commit_message="final", model_name="My reranker", language="en")
    assert commits[-1] == "final"
    card = (hub / "README.md").read_text()
    assert "library_name: fastrank" in card and "My reranker" in card
    published = card + (hub / "fastrank_card.json").read_text()
    assert str(tmp_path) not in published and "dev.jsonl" in published
    assert json.loads((hub / "fastrank_card.json").read_text())["language"] == "en"
    assert "model_name" not in model.card_data  # on the pushed card only
    # the checkpoints' and the pushed card show this run's facts (they were empty with the trainer used directly)
    pushed = json.loads((hub / "fastrank_card.json").read_text())
    assert pushed["loss"] == "BinaryCrossEntropyLoss" and pushed["hyperparameters"]["max_steps"] == 2
    assert pushed["base_model"] == tiny_model_dir.name and "evaluation" not in pushed
    assert "## Loss" in card and "2 rows" in pushed["train_data"]
    checkpoint = json.loads((tmp_path / "out" / "checkpoint-2" / "fastrank_card.json").read_text())
    assert checkpoint["loss"] == "BinaryCrossEntropyLoss"
    model.card_data["model_name"] = "Glacier reranker"
    trainer.push_to_hub(commit_message="again")  # transformers passes model_name=<output folder name> by default
    assert "# Glacier reranker" in (hub / "README.md").read_text()
    # while an earlier push still uploads output_dir, this push is skipped and the folder left whole
    trainer.push_in_progress = type("Pending", (), {"is_done": lambda self: False})()
    (tmp_path / "out" / "tokenizer.json").write_text("being uploaded")
    trainer._push_from_checkpoint(str(tmp_path / "out" / "checkpoint-2"))
    assert (tmp_path / "out" / "tokenizer.json").read_text() == "being uploaded"


def test_the_wrong_kind_of_model_arguments_or_dataset_is_named(tiny_model_dir, tmp_path):
    """A sentence-transformers CrossEncoder, transformers' own TrainingArguments or a streaming dataset failed deep
    inside training (AttributeError, KeyError, len() of an IterableDataset)."""
    import datasets
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
    from transformers import TrainingArguments

    from fastrank import CrossEncoder
    from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    rows = {"query": ["a", "b"], "document": ["x", "y"], "label": [1.0, 0.0]}
    ds = datasets.Dataset.from_dict(rows)
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), save_strategy="no")
    with pytest.raises(TypeError, match=r"model must be a fastrank.CrossEncoder, got sentence_transformers\..*"
                                        r"CrossEncoder; load the same checkpoint with fastrank.CrossEncoder"):
        CrossEncoderTrainer(model=STCrossEncoder(str(tiny_model_dir), device="cpu"), args=args, train_dataset=ds)
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32)
    with pytest.raises(TypeError, match=r"args must be fastrank.training.CrossEncoderTrainingArguments, got "
                                        r"transformers.training_args.TrainingArguments"):
        CrossEncoderTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path)), train_dataset=ds)
    with pytest.raises(DataError, match="train_dataset must be a datasets.Dataset, got IterableDataset: .*streaming"):
        CrossEncoderTrainer(model=model, args=args, train_dataset=ds.to_iterable_dataset())


def test_a_run_recorded_before_a_setting_existed_resumes_with_its_default(toy_data, tiny_model_dir, tmp_path):
    """Checkpoints recorded before data_split existed were refused by --resume ('data_split None -> train')."""
    from fastrank.errors import FastrankError
    from fastrank.training.recipe import RUN_RECORD, _check_same_run, _run_record

    config = _config(toy_data, tiny_model_dir, tmp_path / "m")
    record = _run_record(config, False)
    older = json.loads(json.dumps(record))
    del older["settings"]["data_split"]
    (tmp_path / RUN_RECORD).write_text(json.dumps(older))
    _check_same_run(tmp_path, record)  # the same run: the setting had its default then
    with pytest.raises(FastrankError, match=r"data_split 'train' -> 'dev'"):
        _check_same_run(tmp_path, _run_record(replace(config, data_split="dev"), False))
