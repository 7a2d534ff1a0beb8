"""Command-line options that several commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

QueryPrompt = Annotated[str | None, typer.Option(
    "--query-prompt", help="Text the embedding model puts before each query (e5: 'query: '); default: its saved "
                           "query prompt, if any.")]
DocumentPrompt = Annotated[str | None, typer.Option(
    "--document-prompt", help="Text it puts before each document (e5: 'passage: '); default: its saved document "
                              "prompt, if any.")]
