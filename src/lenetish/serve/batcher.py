"""One thread owns the model: it gathers waiting requests into batches and runs ``predict``.

Request handlers never touch the model. They hand prepared pixels to :meth:`Batcher.submit`
and wait for the answer; the batcher's thread takes the first waiting request, adds every
request already queued behind it (up to ``max_batch`` images) and, while other requests are
still being read or prepared (:meth:`Batcher.incoming`), waits for them at most ``max_wait``
seconds from the first one's arrival; then it runs :func:`lenetish.predict` once on the lot.
A lone request never waits. A client that is slow to send or to read never holds the model:
its body is read in full before it is queued, and its answer is written after the pass.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lenetish.data.identity import DatasetInfo
from lenetish.errors import RequestRejectedError
from lenetish.evaluation import Prediction, predict

__all__ = ["Batcher", "BatcherStats"]


@dataclass
class _Job:
    """Pixels ``(n, 1, 28, 28)`` waiting for the model, and where their answer goes."""

    pixels: Tensor
    arrived: float = field(default_factory=time.monotonic)
    future: concurrent.futures.Future[Prediction] = field(default_factory=concurrent.futures.Future)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class BatcherStats:
    """What a :class:`Batcher` has done so far.

    Attributes:
        passes: forward passes run (calls of :func:`lenetish.predict`).
        requests: requests answered (with a prediction or an error).
        images: images predicted.
        largest_batch: the most images in one pass.
        waiting: images queued now.
        dropped: requests whose caller stopped waiting (a client that left) before their
            pass began, so they were never run.
    """

    passes: int
    requests: int
    images: int
    largest_batch: int
    waiting: int
    dropped: int = 0


class Batcher:
    """Runs every forward pass of one model on one thread, concurrent requests batched.

    Args:
        model: the network (never used by any other thread while the batcher runs).
        dataset: the dataset the model was trained on (normalisation, class names).
        batching: gather queued requests into one pass; ``False``: one request per pass.
        max_batch: the most images in one pass (a single larger request runs alone).
        max_wait: seconds the first request of a batch may wait for requests still on their
            way (see :meth:`incoming`), from its arrival; with none on the way, no wait.
        max_queue: the most images waiting; :meth:`submit` refuses more (status 503).
        device: where the model runs (``None``: where its weights are).
        threads: torch's CPU threads in the model's thread (``None``: leave torch's setting;
            torch applies it to threads started later too).

    Example:
        >>> from lenetish import pretrained
        >>> from lenetish.catalog import DATASETS
        >>> batcher = Batcher(pretrained(), dataset=DATASETS["mnist"])
        >>> answers = [batcher.submit(torch.zeros(1, 1, 28, 28)) for _ in range(3)]
        >>> batcher.start()
        >>> [len(answer.result().labels) for answer in answers]
        [1, 1, 1]
        >>> batcher.stats().passes  # the three queued requests made one pass
        1
        >>> batcher.close()
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        dataset: DatasetInfo,
        batching: bool = True,
        max_batch: int = 256,
        max_wait: float = 0.005,
        max_queue: int = 4096,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.threads = threads
        self.dataset = dataset
        self.batching = batching
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.device = device
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: _Job | None = None  # taken from the queue, too large for the last batch
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._waiting = 0
        self._incoming = 0  # requests being read or prepared, which may join the next batch
        self._passes = self._requests = self._images = self._largest = self._dropped = 0

    def start(self) -> None:
        """Start the model's thread (once); queued requests wait until then.

        :meth:`submit` never starts it, so what is queued before ``start`` is known exactly
        (the first pass takes every request queued by then, up to ``max_batch`` images).
        """
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="lenetish-serve-model", daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then stop the thread (waits up to ``timeout`` seconds).

        A batcher that was never started starts now, to answer what was queued.
        """
        with self._lock:
            if not self._closed:
                if self._thread is None and self._waiting > 0:
                    self.start()
                self._closed = True
                self._queue.put(None)
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def stats(self) -> BatcherStats:
        """Counts of passes, requests and images so far, and the images waiting now."""
        with self._lock:
            return BatcherStats(
                self._passes,
                self._requests,
                self._images,
                self._largest,
                self._waiting,
                self._dropped,
            )

    def submit(self, pixels: Tensor) -> concurrent.futures.Future[Prediction]:
        """Queue checked pixels ``(n, 1, 28, 28)`` (uint8 0-255 or float 0-1) for the model.

        They are run once the thread runs (:meth:`start`).

        Returns:
            A future of their :class:`~lenetish.Prediction`.

        Raises:
            RequestRejectedError: the server is stopping, or ``max_queue`` images are
                waiting already (status 503: try again shortly).
        """
        job = _Job(pixels)
        with self._lock:  # jobs and the end marker enter the queue in the order of this lock
            if self._closed:
                raise RequestRejectedError(503, "the server is stopping; try another one")
            if self._waiting + len(job) > self.max_queue:
                raise RequestRejectedError(
                    503,
                    f"the server is busy ({self._waiting} images are waiting for the model); "
                    "try again in a moment",
                )
            self._waiting += len(job)
            self._queue.put(job)
        return job.future

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request as on its way (being read and prepared) while the block runs.

        The model's thread waits (up to ``max_wait``) for such requests to join its batch;
        leave the block before :meth:`submit`, or the thread waits for this request itself.
        """
        with self._lock:
            self._incoming += 1
        try:
            yield
        finally:
            with self._lock:
                self._incoming -= 1

    async def predict(self, pixels: Tensor) -> Prediction:
        """:meth:`submit`, awaited; a cancelled caller's images are dropped if not yet run."""
        future = self.submit(pixels)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if future.cancel():  # not running yet: the model's thread will skip it
                with self._lock:
                    self._dropped += 1
            raise

    def _take(self, timeout: float | None) -> _Job | None:
        """The held job, else the next queued item (``None``: the end marker).

        Raises:
            queue.Empty: nothing arrived within ``timeout`` seconds (0 or less: no wait).
        """
        if self._held is not None:
            job, self._held = self._held, None
            return job
        if timeout is not None and timeout <= 0:
            return self._queue.get_nowait()
        return self._queue.get(timeout=timeout)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and the jobs that join its batch; whether the end marker was reached."""
        jobs, count = [first], len(first)
        deadline = first.arrived + self.max_wait
        while self.batching and count < self.max_batch:
            on_the_way = self._incoming > 0  # else waiting could only delay this batch
            try:
                job = self._take(deadline - time.monotonic() if on_the_way else 0)
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            if count + len(job) > self.max_batch:
                self._held = job  # it starts the next batch
                break
            jobs.append(job)
            count += len(job)
        return jobs, False

    def _run(self) -> None:
        """The model's thread: batch after batch until the end marker."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        stopping = False
        while not stopping:
            first = self._take(None)
            if first is None:
                break
            jobs, stopping = self._gather(first)
            self._answer(jobs)
        while True:  # defensive: anything still held or queued is answered, one by one
            try:
                job = self._take(0)
            except queue.Empty:
                return
            if job is not None:
                self._answer([job])

    def _answer(self, jobs: list[_Job]) -> None:
        """One forward pass for ``jobs`` (those whose callers still wait); set each answer."""
        with self._lock:
            self._waiting -= sum(len(job) for job in jobs)
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        with self._lock:
            self._requests += len(live)
        if not live:
            return
        try:
            prediction = self._forward(torch.cat([_as_float(job.pixels) for job in live]))
        except Exception as exc:
            if len(live) > 1:  # one request's fault must not fail the others: each alone
                for job in live:
                    self._answer_alone(job)
                return
            live[0].future.set_exception(exc)
            return
        start = 0
        for job in live:
            stop = start + len(job)
            job.future.set_result(
                Prediction(
                    prediction.labels[start:stop],
                    prediction.probabilities[start:stop],
                    prediction.classes,
                )
            )
            start = stop

    def _answer_alone(self, job: _Job) -> None:
        try:
            job.future.set_result(self._forward(_as_float(job.pixels)))
        except Exception as exc:
            job.future.set_exception(exc)

    def _forward(self, pixels: Tensor) -> Prediction:
        """:func:`lenetish.predict` on one batch, counted."""
        prediction = predict(self.model, pixels, dataset=self.dataset, device=self.device)
        with self._lock:
            self._passes += 1
            self._images += int(pixels.shape[0])
            self._largest = max(self._largest, int(pixels.shape[0]))
        return prediction


def _as_float(pixels: Tensor) -> Tensor:
    """Raw pixels as float32 in ``[0, 1]`` (uint8 divided by 255, as ``predict`` does)."""
    return pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
