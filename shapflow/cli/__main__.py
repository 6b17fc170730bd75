"""``python -m shapflow.cli``: the ``shapflow`` command (what the subprocess tests and job files run)."""

from shapflow.cli.main import main

main()
