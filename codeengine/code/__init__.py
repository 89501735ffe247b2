"""The code itself: format, signing suites, keyring, trust list, verification and rules.

This layer is pure: no network, no event loop, no clock. Time, randomness and keys are
arguments. It is exactly what the offline terminal SDK needs, and every other layer builds on
it; ``tests/unit/test_layers.py`` keeps it that way.
"""

__all__: list[str] = []
