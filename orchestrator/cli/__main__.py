"""``python -m farfield.orchestrator.cli``: the ``farfield`` command."""

from farfield.orchestrator.cli import main

main()
