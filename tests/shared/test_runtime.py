"""Process-level tuning the service command line applies."""

from __future__ import annotations

import gc

import pytest

from shared import runtime


@pytest.fixture
def restore_gc():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)
    gc.unfreeze()
    runtime._gc_tuned = False


def test_tune_gc_freezes_the_heap_and_only_ever_raises_the_thresholds(restore_gc) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    runtime.tune_gc()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    gc.set_threshold(50_000, 5, 100)
    runtime.tune_gc()
    assert gc.get_threshold() == (50_000, 20, 100)
    gc.set_threshold(0)  # switched off: left so
    runtime.tune_gc()
    assert gc.get_threshold()[0] == 0


def test_start_up_heap_is_frozen_only_in_a_tuned_process(restore_gc) -> None:
    gc.unfreeze()
    runtime._gc_tuned = False
    runtime.freeze_startup_heap()
    assert gc.get_freeze_count() == 0  # tests and embedding code are left alone
    runtime.tune_gc()
    gc.unfreeze()
    started = [object() for _ in range(10)]  # what start-up adds
    runtime.freeze_startup_heap()
    assert gc.get_freeze_count() >= len(started)
