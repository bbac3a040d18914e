"""Tests of lenetish.serve.batcher: one thread owns the model, queued requests share a pass."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from lenetish import MNISTConvNet, predict, pretrained
from lenetish.catalog import DATASETS
from lenetish.errors import RequestRejectedError
from lenetish.serve.batcher import Batcher, BatcherStats

MNIST = DATASETS["mnist"]


def _digits(count: int, seed: int = 0) -> Tensor:
    """``count`` random uint8 pictures ``(count, 1, 28, 28)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 1, 28, 28), generator=generator, dtype=torch.uint8)


class ThreadRecorder(MNISTConvNet):
    """The seed network, noting which thread runs each forward pass (in a class attribute)."""

    threads: ClassVar[set[int]] = set()  # shared by the private copies predict makes

    def forward(self, x: Tensor) -> Tensor:
        ThreadRecorder.threads.add(threading.get_ident())
        return super().forward(x)


def test_requests_queued_together_share_one_forward_pass() -> None:
    """Requests waiting when the thread starts are answered by one pass."""
    batcher = Batcher(pretrained(), dataset=MNIST)
    answers = [batcher.submit(_digits(2, seed)) for seed in range(4)]
    batcher.start()
    assert [len(answer.result(timeout=60).labels) for answer in answers] == [2, 2, 2, 2]
    assert batcher.stats().passes == 1
    batcher.close()


def test_each_answer_is_what_predict_gives_for_that_request_alone() -> None:
    """Splitting a shared pass gives every request its own rows, in order."""
    model = pretrained()
    batcher = Batcher(model, dataset=MNIST)
    requests = [_digits(3, seed) for seed in range(3)]
    answers = [batcher.submit(pixels) for pixels in requests]
    batcher.start()
    for pixels, answer in zip(requests, answers, strict=True):
        alone = predict(model, pixels, precision="32")
        shared = answer.result(timeout=60)
        assert torch.equal(shared.labels, alone.labels)
        assert torch.allclose(shared.probabilities, alone.probabilities, atol=0.02)
    batcher.close()


def test_without_batching_each_request_gets_its_own_pass() -> None:
    """batching=False runs one pass per request, however many are queued."""
    batcher = Batcher(pretrained(), dataset=MNIST, batching=False)
    answers = [batcher.submit(_digits(1, seed)) for seed in range(3)]
    batcher.start()
    concurrent.futures.wait(answers, timeout=60)
    assert batcher.stats().passes == 3
    batcher.close()


def test_a_pass_holds_at_most_max_batch_images() -> None:
    """Queued requests beyond max_batch images wait for the next pass."""
    batcher = Batcher(pretrained(), dataset=MNIST, max_batch=4)
    answers = [batcher.submit(_digits(2, seed)) for seed in range(3)]
    batcher.start()
    concurrent.futures.wait(answers, timeout=60)
    assert (batcher.stats().passes, batcher.stats().largest_batch) == (2, 4)
    batcher.close()


def test_the_model_runs_on_one_thread_only() -> None:
    """Requests from many threads all reach the model on the batcher's single thread."""
    ThreadRecorder.threads = set()
    batcher = Batcher(ThreadRecorder().eval(), dataset=MNIST)
    batcher.start()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(lambda seed: batcher.submit(_digits(1, seed)), range(32)))
    concurrent.futures.wait(futures, timeout=60)
    batcher.close()
    assert len(ThreadRecorder.threads) == 1
    assert threading.get_ident() not in ThreadRecorder.threads


def test_a_cancelled_request_is_not_run() -> None:
    """A request whose caller gave up before its pass is dropped from the pass."""
    batcher = Batcher(pretrained(), dataset=MNIST)
    dropped, kept = batcher.submit(_digits(5)), batcher.submit(_digits(1))
    dropped.cancel()
    batcher.start()
    kept.result(timeout=60)
    assert (batcher.stats().images, batcher.stats().requests) == (1, 1)
    batcher.close()


def test_a_full_queue_answers_busy() -> None:
    """More images waiting than max_queue is refused with status 503."""
    batcher = Batcher(pretrained(), dataset=MNIST, max_queue=4)
    batcher.submit(_digits(3))
    with pytest.raises(RequestRejectedError, match="the server is busy") as refused:
        batcher.submit(_digits(2))
    assert refused.value.status == 503
    batcher.close()


def test_submit_does_not_start_the_model_thread() -> None:
    """Queued requests are not run before start(), so what one pass takes is known."""
    batcher = Batcher(pretrained(), dataset=MNIST)
    answer = batcher.submit(_digits(1))
    with pytest.raises(concurrent.futures.TimeoutError):
        answer.result(timeout=0.2)
    assert batcher.stats() == BatcherStats(0, 0, 0, 0, 1)
    batcher.start()
    assert len(answer.result(timeout=60).labels) == 1
    batcher.close()


def test_a_closed_batcher_refuses_new_requests() -> None:
    """After close, submit answers that the server is stopping (503)."""
    batcher = Batcher(pretrained(), dataset=MNIST)
    batcher.close()
    with pytest.raises(RequestRejectedError, match="the server is stopping"):
        batcher.submit(_digits(1))


def test_close_answers_what_is_queued() -> None:
    """Requests queued before close are still answered."""
    batcher = Batcher(pretrained(), dataset=MNIST)
    answer = batcher.submit(_digits(1))
    batcher.close()
    assert len(answer.result(timeout=60).labels) == 1


class Picky(nn.Module):
    """A model that fails on any batch holding an all-white picture."""

    def forward(self, x: Tensor) -> Tensor:
        if bool((x.flatten(1).min(dim=1).values > 2.0).any()):
            raise RuntimeError("a white picture")
        return torch.log_softmax(x.flatten(1)[:, :10], dim=1)


def test_one_failing_request_does_not_fail_the_others_in_its_pass() -> None:
    """A pass that fails is retried request by request; only the faulty one gets the error."""
    batcher = Batcher(Picky(), dataset=MNIST)
    bad = batcher.submit(torch.full((1, 1, 28, 28), 255, dtype=torch.uint8))
    good = batcher.submit(_digits(1))
    batcher.start()
    assert len(good.result(timeout=60).labels) == 1
    with pytest.raises(RuntimeError, match="a white picture"):
        bad.result(timeout=60)
    batcher.close()


class ThreadCounter(MNISTConvNet):
    """The seed network, noting torch's thread count during each forward pass."""

    counts: ClassVar[list[int]] = []

    def forward(self, x: Tensor) -> Tensor:
        ThreadCounter.counts.append(torch.get_num_threads())
        return super().forward(x)


def test_the_model_thread_uses_the_threads_asked_for() -> None:
    """threads=N sets torch's CPU threads in the model's thread."""
    wanted = torch.get_num_threads() + 1
    ThreadCounter.counts = []
    batcher = Batcher(ThreadCounter().eval(), dataset=MNIST, threads=wanted)
    batcher.start()
    batcher.submit(_digits(1)).result(timeout=60)
    batcher.close()
    assert set(ThreadCounter.counts) == {wanted}


def test_a_lone_request_is_not_held_for_max_wait() -> None:
    """With no other request on its way, a request runs at once, not after max_wait."""
    batcher = Batcher(pretrained(), dataset=MNIST, max_wait=60.0)
    batcher.start()
    assert len(batcher.submit(_digits(1)).result(timeout=20).labels) == 1
    batcher.close()


def test_a_request_on_its_way_is_waited_for() -> None:
    """While another request is being read, the queued one waits for it (up to max_wait)."""
    batcher = Batcher(pretrained(), dataset=MNIST, max_wait=60.0)
    batcher.start()
    with batcher.incoming():
        first = batcher.submit(_digits(1))
        with pytest.raises(concurrent.futures.TimeoutError):
            first.result(timeout=0.5)
    second = batcher.submit(_digits(1, seed=1))
    assert [len(f.result(timeout=20).labels) for f in (first, second)] == [1, 1]
    batcher.close()


def test_a_caller_that_stops_waiting_has_its_images_dropped() -> None:
    """A predict() cancelled before its pass begins is counted as dropped and never run."""
    batcher = Batcher(pretrained(), dataset=MNIST)

    async def give_up() -> None:
        waiting = asyncio.ensure_future(batcher.predict(_digits(1)))
        await asyncio.sleep(0)  # one turn of the loop: the task queues its images and waits
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(give_up())
    assert batcher.stats().dropped == 1
    batcher.start()
    batcher.close()
    assert (batcher.stats().passes, batcher.stats().requests) == (0, 0)
