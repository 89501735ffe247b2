"""The worker's garbage collector set-up: what was loaded is frozen, the young threshold raised."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from codeengine.web.worker import tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_loaded_objects_are_frozen_and_the_young_threshold_raised() -> None:
    gc.unfreeze()
    older = gc.get_threshold()[1:]
    loaded = object(), [object()]  # a tracked container made before the call
    tune_gc(20_000)
    assert gc.get_threshold() == (20_000, *older)
    assert gc.get_freeze_count() > 0
    assert not any(o is loaded for o in gc.get_objects()), "frozen objects are not scanned"


@pytest.mark.usefixtures("restored_gc")
def test_zero_keeps_the_threshold() -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() > 0
