"""``fastrank mine``: hard negatives for a dataset from a corpus, written as grouped JSONL (``--out`` must end in
``.jsonl`` or ``.json``: fastrank reads CSV, TSV and Parquet but writes only JSONL)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.options import DocumentPrompt, QueryPrompt
from fastrank.cli.output import print_json


def mine_file(data: str, out: str, corpus: list[str] | None = None, embedding_model: str | None = None,
              teacher: str | None = None, answer_closest: int = 0, answer_random: int = 0,
              query_prompt: str | None = None, document_prompt: str | None = None, split: str = "train",
              **options: Any) -> dict[str, Any]:
    """Mine negatives for ``data`` (``split`` of a BEIR folder or hub dataset) from the documents of ``corpus``
    files (default: ``data`` itself), optionally add other queries' positives as negatives (``answer_closest`` +
    ``answer_random``), then teacher scores; write ``out``. ``query_prompt`` / ``document_prompt`` replace the
    embedding model's saved prompts."""
    from fastrank.data import check_groups_path, check_split, read_corpus, read_groups, write_groups
    from fastrank.embedding import EmbeddingModel, role_prompts
    from fastrank.io import check_dir_path, check_output_file
    from fastrank.mining import (
        ANSWER_MARGIN,
        add_answer_negatives,
        attach_teacher_scores,
        check_mining_options,
        check_teacher,
        mine_hard_negatives,
    )
    from fastrank.model import DEFAULT_BASE, CrossEncoder

    check_mining_options(**options)  # before the embedding model loads
    check_split(data, split)
    if answer_closest < 0 or answer_random < 0:  # before mining, not after it
        raise ValueError(f"--answer-closest and --answer-random must be >= 0, got {answer_closest} and "
                         f"{answer_random}")
    # before mining, and never over an input (a file of a model folder, too)
    check_output_file(out, [data, *(corpus or []), embedding_model, teacher], "--out")
    check_groups_path(out, "--out")  # JSONL in a .csv would fail to read back
    if options.get("cache_dir"):
        check_dir_path(options["cache_dir"], "--cache-dir")
    scorer = CrossEncoder(teacher) if teacher else None
    if scorer is not None:
        check_teacher(scorer)
    groups = read_groups(data, split)
    docs = [d for path in corpus for d in read_corpus(path)] if corpus else None
    if docs is not None and not docs:
        raise ValueError(f"--corpus {' '.join(corpus)}: no documents in them; give files with documents, or leave "
                         "--corpus out to mine from the data's own documents")
    model = EmbeddingModel(embedding_model or DEFAULT_BASE, prompts=role_prompts(query_prompt, document_prompt))
    start = time.perf_counter()
    result = mine_hard_negatives(groups, model, docs, **options)
    stats = dict(result.stats)
    if answer_closest or answer_random:
        answers = add_answer_negatives(result.groups, model, closest=answer_closest, random_count=answer_random,
                                       relative_margin=ANSWER_MARGIN if options.get("relative_margin") is None
                                       else options["relative_margin"],
                                       show_progress_bar=options.get("show_progress_bar"),
                                       seed=options.get("seed", 0))
        result, stats = answers, {**stats, **answers.stats}
    if scorer is not None:
        attach_teacher_scores(result.groups, scorer)
    seconds = time.perf_counter() - start
    write_groups(result.groups, out)
    return {"output": out, "embedding_model": model.name_or_path, "embedding_prompts": model.applied_prompts,
            "queries": len(result.groups), "seconds": round(seconds, 1),
            "documents_per_second": None if stats.get("corpus_cache_hit")  # nothing was embedded: no rate
            else round(stats["corpus_size"] / seconds, 1), **stats}


def mine_command(
    data: Annotated[str, typer.Option("--data", help="Queries with positives (grouped JSONL, CSV, ..., or a BEIR "
                                                      "folder's judged documents).")],
    out: Annotated[Path, typer.Option("--out", help="Output file with mined negatives: grouped JSONL, so its name "
                                                 "must end in .jsonl or .json (CSV, TSV and Parquet are read, not "
                                                 "written).")],
    corpus: Annotated[list[str] | None, typer.Option("--corpus", help="Files whose documents form the corpus "
                                                     "(repeatable): .txt one per line, JSONL of strings or "
                                                     "{\"text\": ...} (with a \"title\" if it has "
                                                     "one), or datasets; default: the data's own documents.")] = None,
    model: Annotated[str | None, typer.Option("--embedding-model", "--model", help="Embedding model (default "
                                              "all-MiniLM-L6-v2); --model is its older name.")] = None,
    query_prompt: QueryPrompt = None,
    document_prompt: DocumentPrompt = None,
    num_negatives: Annotated[int, typer.Option("--num-negatives", help="Mined negatives added per query.")] = 5,
    range_min: Annotated[int, typer.Option(
        "--range-min", help="Skip the first N retrieved documents (where unlabelled positives hide).")] = 0,
    range_max: Annotated[int, typer.Option(
        "--range-max", help="Draw negatives from the first N retrieved documents only.")] = 50,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", help="Only negatives whose similarity to the query is at least this.")] = None,
    max_score: Annotated[float | None, typer.Option(
        "--max-score", help="Only negatives whose similarity to the query is at most this.")] = None,
    relative_margin: Annotated[float | None, typer.Option(
        "--relative-margin", help="Drop negatives above the lowest positive's similarity less M x its magnitude "
                                  "(likely false negatives); in [0, 1). Default: none for mined negatives, 0.05 "
                                  "for answer negatives.")] = None,
    absolute_margin: Annotated[float | None, typer.Option(
        "--absolute-margin", help="Drop negatives above the lowest positive's similarity minus M (>= 0).")] = None,
    sampling: Annotated[str, typer.Option("--sampling", help="top | random")] = "top",
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of --sampling random and --answer-random: another seed draws another sample.")] = 0,
    keep_original_negatives: Annotated[bool, typer.Option(
        "--keep-original-negatives", help="Keep the data's own negatives beside the mined ones (default: "
                                          "replace them).")] = False,
    answer_closest: Annotated[int, typer.Option("--answer-closest", help="Also add this many other queries' "
                                                "positives as negatives: the closest to the query.")] = 0,
    answer_random: Annotated[int, typer.Option("--answer-random", help="... and this many more at random.")] = 0,
    teacher: Annotated[str | None, typer.Option("--teacher", help="Cross-encoder whose scores are attached.")] = None,
    cache_dir: Annotated[str, typer.Option(
        "--cache-dir", help="Where corpus embeddings are cached between runs (keyed by the model's weights and "
                            "settings and the corpus; an unreadable file is embedded again); '' for no cache.")
    ] = ".fastrank-cache",
    split: Annotated[str, typer.Option(
        "--split", help="With a BEIR folder or a hub dataset as --data: the split mined for (a BEIR folder's "
                        "qrels/SPLIT.tsv).")] = "train",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Mine hard negatives with an embedding model."""
    result = mine_file(str(data), str(out), corpus, model, teacher, answer_closest, answer_random,
                       query_prompt, document_prompt, split, num_negatives=num_negatives,
                       range_min=range_min, range_max=range_max, min_score=min_score, max_score=max_score,
                       relative_margin=relative_margin, absolute_margin=absolute_margin, sampling=sampling, seed=seed,
                       keep_original_negatives=keep_original_negatives,
                       cache_dir=cache_dir or None)  # '': no cache (a Path of '' would be this folder)
    if as_json:
        print_json(result)
        return
    speed = ("corpus embeddings from the cache" if result["corpus_cache_hit"]
             else f"{result['documents_per_second']} documents/s")
    typer.echo(f"mined negatives for {result['queries']} queries from {result['corpus_size']} documents in "
               f"{result['seconds']} s ({speed}); wrote {result['output']}")
    notes = {k: v for k, v in result.items() if k.endswith(("skipped", "removed", "added_to_corpus", "by_margin",
                                                            "fewer_negatives", "fewer_answer_negatives")) and v}
    if notes:
        typer.echo("notes: " + json.dumps(notes))
