"""Scoring from several threads at once (a threaded web app): the scores and the process's torch state are what
single-threaded calls leave."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

PAIRS = [("what is a river", f"a river is water number {i} " * (1 + i % 7)) for i in range(24)]


def test_a_model_in_train_mode_scores_without_dropout_from_every_thread(tiny_model_dir):
    """Each predict switched the shared model to eval and back: a call that ended switched dropout on under the
    others' forward passes (1-2% of calls scored wrong), and the model could be left in eval mode."""
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=64)
    model.model.train()
    reference = model.predict(PAIRS, batch_size=4)
    assert model.model.training
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: model.predict(PAIRS, batch_size=4), range(48)))
    assert all(np.array_equal(r, reference) for r in results)
    assert model.model.training  # the caller's mode, once the last call ended
    first, second = model.scoring_mode(), model.scoring_mode()  # two calls overlapping, as threads make them
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not model.model.training  # the first call to end leaves the second its eval mode
    second.__exit__(None, None, None)
    assert model.model.training


def test_the_thread_count_before_overlapping_calls_is_the_one_restored():
    """A call that read torch's thread count while another call held its own restored that one: afterwards the
    process, and every thread it starts, ran torch with the backend's count instead of its own."""
    from fastrank.backends.torch_backend import torch_threads

    original = torch.get_num_threads()
    held, done = threading.Event(), threading.Event()

    def first_call():
        with torch_threads(torch, 1):
            held.set()
            done.wait(10)

    def in_new_thread(fn):
        box = []
        thread = threading.Thread(target=lambda: box.append(fn()))
        thread.start()
        thread.join(10)
        return box[0]

    thread = threading.Thread(target=first_call)
    thread.start()
    held.wait(10)

    def second_call():
        with torch_threads(torch, 1):
            inside = torch.get_num_threads()
        return inside

    assert in_new_thread(second_call) == 1
    done.set()
    thread.join(10)
    assert in_new_thread(torch.get_num_threads) == original
    with torch_threads(torch, None):  # None leaves the count alone
        assert torch.get_num_threads() == original


class _PausingTorch:
    """A stand-in for torch's thread-count calls: setting ``pause_at`` blocks there until ``resume`` is set."""

    def __init__(self, threads: int) -> None:
        self.threads, self.pause_at = threads, None
        self.paused, self.resume = threading.Event(), threading.Event()

    def get_num_threads(self) -> int:
        return self.threads

    def set_num_threads(self, n: int) -> None:
        if n < 1:
            raise RuntimeError("Expected num_threads to be positive")
        if n == self.pause_at:
            self.paused.set()
            self.resume.wait(10)
        self.threads = n


def test_a_call_starting_while_another_restores_reads_the_count_from_before_both():
    """The ending call set the count back after releasing the lock: a call starting in between took the ending
    call's count for the one to restore, and left the process at it."""
    import time

    from fastrank.backends.torch_backend import torch_threads

    fake = _PausingTorch(8)

    def first():
        with torch_threads(fake, 2):
            fake.pause_at = 8  # its restore pauses half-way

    ending = threading.Thread(target=first)
    ending.start()
    assert fake.paused.wait(10)
    release = threading.Event()

    def second():
        with torch_threads(fake, 3):
            release.wait(10)  # holds its count until the first call has ended

    starting = threading.Thread(target=second)
    starting.start()
    time.sleep(0.2)  # the second call starts while the first is restoring
    fake.pause_at = None
    fake.resume.set()
    ending.join(10)
    release.set()
    starting.join(10)
    assert fake.threads == 8


def test_a_failed_thread_count_leaves_no_call_counted():
    from fastrank.backends import torch_backend

    fake = _PausingTorch(4)
    try:
        with torch_backend.torch_threads(fake, 0):
            pass
    except RuntimeError:
        pass
    assert torch_backend._threads_in_use["calls"] == 0 and fake.threads == 4
    fake.threads = 1  # the user changes it later: the next call restores that, not a stale count
    with torch_backend.torch_threads(fake, 2):
        assert fake.threads == 2
    assert fake.threads == 1


def test_a_copy_made_while_scoring_scores_in_eval_mode(tiny_model_dir):
    """The count of calls scoring lived on the model: a deepcopy taken mid-call believed one call was still running,
    never switched to eval, and scored with dropout on."""
    import copy

    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=64)
    model.model.train()
    scoring = model.scoring_mode()
    scoring.__enter__()
    clone = copy.deepcopy(model)
    scoring.__exit__(None, None, None)
    assert model.model.training
    clone.model.train()
    assert np.array_equal(clone.predict(PAIRS), clone.predict(PAIRS)) and clone.model.training
