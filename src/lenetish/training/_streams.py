"""What an epoch iterates when ``steps_per_epoch`` or ``overfit_batches`` reshapes the loader.

* :class:`ContinuingLoader` (Keras' ``steps_per_epoch``): every epoch takes the next
  ``steps`` batches of one iterator that goes on across epochs; where a pass of the loader
  ends, the next pass starts inside the same epoch (its ``set_epoch`` told the pass's index).
  Its :meth:`~ContinuingLoader.position` (passes begun, batches drawn from the current one,
  and the random states at that pass's start) goes into checkpoints, so a resumed fit
  rebuilds the pass and draws on exactly where the interrupted one was.
* :class:`FirstBatches` (Lightning's ``overfit_batches``): the first batches of one pass,
  taken once and given again, in the same order, every epoch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lenetish.data.loaders import tell_epoch
from lenetish.errors import CheckpointError, InvalidArgumentError
from lenetish.saving.checkpoint import capture_rng_state, restore_rng_state
from lenetish.training._loader_rng import (
    capture_loader_rng,
    check_loader_rng,
    restore_loader_rng,
)

if TYPE_CHECKING:
    from lenetish.training.trainer import Trainer

__all__ = ["ContinuingLoader", "FirstBatches"]

logger = logging.getLogger("lenetish")

_END = object()


class ContinuingLoader:
    """Epochs of ``steps`` batches drawn from one iterator of ``loader`` that goes on.

    Example:
        >>> from lenetish.training._streams import ContinuingLoader
        >>> from lenetish import MNISTConvNet, Trainer
        >>> stream = ContinuingLoader([1, 2, 3], 2, Trainer(MNISTConvNet(), device="cpu"))
        >>> [list(stream) for _ in range(3)]  # the second epoch begins the second pass
        [[1, 2], [3, 1], [2, 3]]
    """

    def __init__(self, loader: Iterable[Any], steps: int, trainer: Trainer) -> None:
        self.loader, self.steps, self._trainer = loader, steps, trainer
        self.passes = 0  # passes begun
        self.drawn = 0  # batches drawn from the current pass
        self._pass_rng: dict[str, Any] = {}
        self._iterator: Iterator[Any] | None = None
        self.epoch_drawn = 0  # batches drawn in the current epoch
        self._before_last: dict[str, Any] = self.position()  # before the latest draw
        self._placeholders = 0  # of a resumed epoch: batches its checkpoint had drawn

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        """Passes, not epochs, are told to the loader (when each pass begins)."""

    def __iter__(self) -> Iterator[Any]:
        # A resumed epoch first gives a placeholder (None) for each batch its checkpoint had
        # drawn, which the loop skips as done; the stream itself already stands after them.
        skipped, self._placeholders = self._placeholders, 0
        self.epoch_drawn = skipped
        for _ in range(skipped):
            yield None
        for _ in range(self.steps - skipped):
            yield self._next()

    def _next(self) -> Any:
        self._before_last = self.position()
        batch = _END if self._iterator is None else next(self._iterator, _END)
        if batch is _END:
            batch = next(self._start_pass(), _END)
            if batch is _END:
                raise InvalidArgumentError(
                    f"the training loader yielded no batches in pass {self.passes}; "
                    "steps_per_epoch needs a loader that yields batches on every pass"
                )
        self.drawn += 1
        self.epoch_drawn += 1
        return batch

    def _start_pass(self) -> Iterator[Any]:
        """Begin the loader's next pass (told its index): its iterator."""
        tell_epoch(self.loader, self.passes)
        self._pass_rng = {
            "rng": capture_rng_state(),
            "loader_rng": capture_loader_rng(self._trainer),
        }
        self._iterator = iterator = iter(self.loader)
        self.passes, self.drawn = self.passes + 1, 0
        return iterator

    def position(self) -> dict[str, Any]:
        """Where the stream stands, for a checkpoint (plain containers and tensors).

        ``rng`` and ``loader_rng`` are the states at the current pass's start, from which
        it is rebuilt; ``loader_now`` the loader's generators now, which the next pass
        draws from.
        """
        return {
            "passes": self.passes,
            "drawn": self.drawn,
            **self._pass_rng,
            "loader_now": capture_loader_rng(self._trainer),
        }

    def position_after(self, batches: int) -> dict[str, Any]:
        """The position after this epoch's first ``batches`` batches, for a mid-epoch save.

        That is the current position, or the one before the latest draw when the batch just
        drawn is not yet trained (a checkpoint written from inside a step trains it again).
        """
        return self.position() if batches >= self.epoch_drawn else dict(self._before_last)

    def resume_at(self, position: object, source: str, *, done: int = 0) -> None:
        """Rebuild the pass a checkpoint's :meth:`position` was in and draw on from there.

        The random states of the pass's start are put back while its iterator is made and
        its drawn batches are skipped; then torch's global state returns to what it was and
        the loader's generators to the position's ``loader_now``. Call it after the
        checkpoint's own ``loader_rng`` is put back (this replaces it). ``done``: batches of
        the resumed epoch the checkpoint had trained (its next epoch gives placeholders for
        them, which the loop skips).

        Raises:
            CheckpointError: the position is damaged, or the loader now yields fewer batches.
        """
        if not _is_position(position):
            raise CheckpointError(
                f"{source}: its steps_per_epoch position is damaged (expected passes, drawn "
                "and the random states of the pass); resume from an intact checkpoint"
            )
        assert isinstance(position, dict)
        self._placeholders = done
        self.passes, self.drawn, self._iterator = position["passes"] - 1, 0, None
        if position["passes"] == 0:  # written before the first batch
            self.passes = 0
            return
        # (its "rng" was checked with the checkpoint's own, by check_training_checkpoint)
        pass_loader_rng = check_loader_rng(
            self._trainer, position["loader_rng"], source, epoch=position["passes"] - 1
        )
        loader_now = check_loader_rng(
            self._trainer, position.get("loader_now"), source, epoch=position["passes"]
        )
        now = capture_rng_state()
        try:
            restore_rng_state(position["rng"])
            restore_loader_rng(self._trainer, pass_loader_rng or {})
            iterator = self._start_pass()
            for drawn in range(position["drawn"]):
                if next(iterator, _END) is _END:
                    raise CheckpointError(
                        f"{source} was written {position['drawn']} batches into a pass of the "
                        f"training loader, which now yields {drawn}; resume with the "
                        "training data of the run that wrote it"
                    )
                self.drawn += 1
        finally:
            restore_rng_state(now)
            restore_loader_rng(self._trainer, loader_now or {})


def _is_position(position: object) -> bool:
    if not isinstance(position, dict):
        return False
    counts = [position.get("passes"), position.get("drawn")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return False
    return position["passes"] == 0 or (
        isinstance(position.get("rng"), dict) and isinstance(position.get("loader_rng"), dict)
    )


class FirstBatches:
    """The first ``count`` batches of one pass of ``loader``, the same ones every epoch.

    Example:
        >>> from lenetish.training._streams import FirstBatches
        >>> fixed = FirstBatches(range(10), 3)
        >>> list(fixed), list(fixed), len(fixed)
        ([0, 1, 2], [0, 1, 2], 3)
    """

    def __init__(self, loader: Iterable[Any], count: int) -> None:
        tell_epoch(loader, 0)
        self.batches = list(itertools.islice(loader, count))
        if not self.batches:
            raise InvalidArgumentError(
                "overfit_batches: the training loader yielded no batches; give fit() batches"
            )

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.batches)
