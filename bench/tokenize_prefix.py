"""Long documents tokenized from a prefix vs whole, interleaved in one process.

    python -m bench tokenize-prefix [--repeats 5]

``PairEncoder`` tokenizes a document far longer than ``max_length`` from a prefix that gives the same ids
(``fastrank.batching``). The prefix ends at a space, or, for a BERT tokenizer, after a CJK ideograph too (Chinese
text has none of the spaces; until 2026-12-04 such text was tokenized whole). Each row scores 64 (query, document)
pairs with the MiniLM tokenizer at max_length 256: *whole* with the prefix shortcut off, *prefix* as fastrank runs;
the two settings alternate within each repeat, ids are checked equal, and the median is reported with the ratio.
Records go to bench/results/tokenize.jsonl; ``python -m bench report`` puts them in RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import append_record

CHINESE = ("冰川洞穴是怎样形成的", "冰川洞穴是在冰川冰内形成的洞穴，通常由融水流过冰川形成。")  # query, a sentence
ROWS = {  # name -> (query, document of about the given characters)
    "English, 11.5k chars": ("how are glacier caves formed",
                             "A glacier cave is a cave formed within the ice of a glacier. " * 190),
    "Chinese, 11.6k chars": (CHINESE[0], CHINESE[1] * 400),
    "Chinese, 101k chars": (CHINESE[0], CHINESE[1] * 3500),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench tokenize-prefix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from tokenizers import Tokenizer

    from fastrank.batching import PairEncoder
    from fastrank.model import resolve_model_path

    tokenizer = Tokenizer.from_file(f"{resolve_model_path('sentence-transformers/all-MiniLM-L6-v2')}/tokenizer.json")
    for row, (query, document) in ROWS.items():
        pairs = [(query, f"{document} {i}") for i in range(64)]  # distinct documents
        encoders = {"whole": PairEncoder(tokenizer, 256), "prefix": PairEncoder(tokenizer, 256)}
        encoders["whole"]._lazy["_splits_at_spaces"] = False  # the shortcut off: every document tokenized whole
        times: dict[str, list[float]] = {name: [] for name in encoders}
        ids = {}
        for _ in range(args.repeats):
            for name, encoder in encoders.items():
                start = time.perf_counter()
                ids[name] = [x.tolist() for x in encoder.encode(pairs).input_ids]
                times[name].append(time.perf_counter() - start)
        if ids["whole"] != ids["prefix"]:
            raise SystemExit(f"{row}: the prefix gave other ids than the whole text")
        median = {name: statistics.median(t) for name, t in times.items()}
        record = {"row": row, "pairs": len(pairs), "max_length": 256, "repeats": args.repeats,
                  "whole_ms": round(median["whole"] * 1000, 1), "prefix_ms": round(median["prefix"] * 1000, 1),
                  "ratio": round(median["whole"] / median["prefix"], 1),
                  "command": "python -m bench tokenize-prefix" + (f" --repeats {args.repeats}" if argv else "")}
        append_record("tokenize", record)
        print(f"{row}: whole {record['whole_ms']} ms, prefix {record['prefix_ms']} ms, {record['ratio']}x")


if __name__ == "__main__":
    main()
