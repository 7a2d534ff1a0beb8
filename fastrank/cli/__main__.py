"""``python -m fastrank.cli``: same as the ``fastrank`` console script."""

from fastrank.cli import main

main()
