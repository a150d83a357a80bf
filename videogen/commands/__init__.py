"""One module per ``run.sh`` command group (see ``videogen/cli.py``)."""
