"""A /metrics rendering is made at most once a window and served again within it."""

from __future__ import annotations

from codeengine.web.metrics import MetricsCache


class Renderer:
    """Counts its renderings; each one's body names its number."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"rendering {self.calls}\n".encode()


def test_a_rendering_is_reused_within_its_window_and_made_anew_after_it() -> None:
    now = [100.0]
    render = Renderer()
    cache = MetricsCache(render, 1.0, lambda: now[0])
    assert cache.body() == b"rendering 1\n"
    now[0] = 100.999
    assert cache.body() == b"rendering 1\n", "within the window: the same rendering"
    assert render.calls == 1
    now[0] = 101.0
    assert cache.body() == b"rendering 2\n", "a window after it was made: a new one"
    assert (render.calls, cache.renders) == (2, 2)


def test_a_clock_that_goes_back_makes_a_new_rendering() -> None:
    now = [100.0]
    cache = MetricsCache(Renderer(), 1.0, lambda: now[0])
    cache.body()
    now[0] = 50.0
    assert cache.body() == b"rendering 2\n"


def test_a_zero_window_renders_every_time() -> None:
    cache = MetricsCache(Renderer(), 0.0, lambda: 7.0)
    assert [cache.body(), cache.body()] == [b"rendering 1\n", b"rendering 2\n"]
