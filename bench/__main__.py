"""``python -m bench <experiment> [options]``: run one benchmark experiment."""

from __future__ import annotations

import sys


def main() -> None:
    experiments = {"recipes": "bench.recipes", "mining": "bench.mining", "run": "bench.run",
                   "serve": "bench.serve_load", "runtime-ab": "bench.runtime_ab",
                   "long-quality": "bench.long_quality", "memory": "bench.memory", "beir": "bench.beir",
                   "prompts": "bench.prompts", "tokenize-prefix": "bench.tokenize_prefix",
                   "report": "bench.report"}
    if len(sys.argv) < 2 or sys.argv[1] not in experiments:
        raise SystemExit(f"usage: python -m bench {{{'|'.join(experiments)}}} [options]")
    import importlib

    importlib.import_module(experiments[sys.argv[1]]).main(sys.argv[2:])


if __name__ == "__main__":
    main()
