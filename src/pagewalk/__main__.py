"""``python -m pagewalk``: the same as the ``pagewalk`` command."""

from pagewalk.cli.main import main

main()
