"""Printing helpers shared by the CLI commands: JSON for machines, aligned tables for people."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import typer

from fastrank.backends.base import known_backends

# --backend help of the commands that load a model (names from the registry, so a new backend is listed).
BACKEND_HELP = ("auto (a TensorRT engine that fits this GPU, else the artifact's format) | "
                + " | ".join(known_backends()))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def metrics_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """Render {column_name: {metric: value}} as a Markdown table with one row per metric."""
    names = list(columns)
    metrics: list[str] = []
    for values in columns.values():
        metrics += [m for m in values if m not in metrics]
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for m in metrics:
        cells = [f"{columns[n][m]:.4f}" if m in columns[n] else "" for n in names]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
