"""``History``: one row of metrics per epoch, what ``Trainer.fit`` returns."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenetish._atomic import atomic_write
from lenetish.callbacks.base import Callback
from lenetish.errors import InvalidArgumentError, OutputFileError

if TYPE_CHECKING:
    from lenetish.training.state import TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["History", "check_separator"]


Row = dict[str, float]


class History(Callback):
    """One row of metrics per epoch; always present, and what ``Trainer.fit`` returns.

    A row holds ``epoch`` (1-based), ``loss`` and ``accuracy`` (training), ``val_loss`` and
    ``val_accuracy`` (with validation), ``lr`` and ``seconds``.

    :attr:`validations` holds one row per validation, those inside epochs included (the
    Trainer's ``val_check_interval``): ``epoch`` (the one it ran in, 1-based), ``step``
    (optimizer steps so far), ``batch`` (the epoch's training batches so far) and its
    ``val_*`` metrics.

    Args:
        rows: rows to start with (e.g. read back from a file); usually none.

    Attributes:
        rows: one dict of metrics per epoch.
        validations: one dict per validation (inside epochs too): ``epoch``, ``step``,
            ``batch`` and the ``val_*`` metrics.

    Example:
        >>> history = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
        >>> len(history), history[-1]["loss"], history.column("loss")
        (2, 0.25, [0.5, 0.25])
    """

    order = -100
    reads_metrics = True

    def __init__(self, rows: list[Row] | None = None) -> None:
        self.rows: list[Row] = list(rows or [])
        self.validations: list[Row] = []
        self.state_key = "lenetish.History"

    def reset(self) -> None:
        """Drop the rows of an earlier fit."""
        self.rows, self.validations = [], []

    def on_validation_end(
        self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
    ) -> None:
        """Append the validation's row to :attr:`validations`."""
        progress = state.progress  # set inside an epoch's batches, None at its end
        batch = progress.batches_done if progress is not None else state.batch_index + 1
        where = {"epoch": state.epoch + 1, "step": state.global_step, "batch": batch}
        self.validations.append({**where, **metrics})

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Append the epoch's metrics."""
        self.rows.append(dict(state.metrics))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Row:
        return self.rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"History({len(self.rows)} epochs)"

    def column(self, name: str) -> list[float]:
        """The values of metric ``name`` over the epochs that recorded it."""
        return [row[name] for row in self.rows if name in row]

    def state_dict(self) -> dict[str, Any]:
        """The rows and the validations' rows, for checkpoints."""
        return {
            "rows": [dict(row) for row in self.rows],
            "validations": [dict(row) for row in self.validations],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rows from a checkpoint (one written before validations had none)."""
        self.rows = _checked_rows(state["rows"])
        self.validations = _checked_rows(state.get("validations", []))

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the rows as a JSON list of objects (NaN and infinities as ``null``), atomically.

        Raises:
            OutputFileError: the file cannot be written (the disk is full, or ``path`` is a
                link, a device, a FIFO or a folder); an earlier file there is left as it was.
        """
        rows = [
            {key: None if _not_finite(value) else value for key, value in row.items()}
            for row in self.rows
        ]
        _write_text(path, json.dumps(rows, indent=2, allow_nan=False) + "\n")

    def to_csv(self, path: str | os.PathLike[str], *, separator: str = ",") -> None:
        """Write the rows as CSV with a header (the union of the rows' keys), atomically.

        A value a row lacks (``val_loss`` in an epoch without validation) is an empty cell;
        a recorded NaN is ``nan``.

        Args:
            path: the file to write.
            separator: the one character between cells (Keras' ``CSVLogger(separator=)``).

        Raises:
            InvalidArgumentError: ``separator`` is not one character, or is a quote or a
                line break.
            OutputFileError: the file cannot be written (the disk is full, or ``path`` is a
                link, a device, a FIFO or a folder); an earlier file there is left as it was.
        """
        check_separator(separator)
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=columns, lineterminator="\n", delimiter=separator
        )
        writer.writeheader()
        writer.writerows(self.rows)
        _write_text(path, buffer.getvalue())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> History:
        """Load a history written by :meth:`to_json`."""
        rows = json.loads(Path(path).read_text())
        return cls(
            [
                {key: math.nan if value is None else value for key, value in row.items()}
                for row in rows
            ]
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], *, separator: str = ",") -> History:
        """Load a history written by :meth:`to_csv` (empty cells are left out).

        Args:
            path: the CSV file.
            separator: the character between cells, as it was written.

        Raises:
            InvalidArgumentError: ``separator`` is not one character, or is a quote or a
                line break.
        """
        check_separator(separator)
        with open(path, newline="") as handle:
            return cls(
                [
                    {key: _number(value) for key, value in row.items() if value != ""}
                    for row in csv.DictReader(handle, delimiter=separator)
                ]
            )


def check_separator(separator: object) -> None:
    """Refuse a CSV ``separator`` the csv module cannot write and read back.

    Raises:
        InvalidArgumentError: naming the separator and what fits.
    """
    if not isinstance(separator, str) or len(separator) != 1 or separator in '"\r\n':
        raise InvalidArgumentError(
            f"separator must be one character other than a quote or a line break (',', "
            f"';', '\\t'...), got {separator!r}"
        )


def _write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) through the one atomic writer: never a torn or half file."""
    payload = text.encode()
    atomic_write(path, lambda handle: handle.write(payload), error=OutputFileError)


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _checked_rows(rows: object) -> list[Row]:
    if not isinstance(rows, list) or not all(
        isinstance(row, dict)
        and all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in row.items())
        for row in rows
    ):
        raise ValueError("History rows must be a list of {metric name: number} rows")
    return [dict(row) for row in rows]


def _not_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
