"""fastrank benchmarks: ``python -m bench <experiment>``; results land in bench/results/*.jsonl and RESULTS.md."""
