"""``python -m fastrank``: same as the ``fastrank`` console script (and ``python -m fastrank.cli``)."""

from fastrank.cli import main

main()
