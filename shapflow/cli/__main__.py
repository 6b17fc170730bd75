"""``python -m shapflow.cli``: the ``shapflow`` command without the console script."""

from shapflow.cli.main import main

main()
