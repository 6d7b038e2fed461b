"""``python -m api.cli``: the ``fusebox`` command."""

from api.cli import main

main()
