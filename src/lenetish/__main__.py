"""``python -m lenetish``: the same as the ``lenetish`` command."""

from lenetish.cli import run

run()
