"""Benchmarks: pytest-benchmark micro-benchmarks and the HTTP throughput harness with its floors.

The package marker matters: ``bench/http.py`` would otherwise shadow the standard library's
``http`` for anything that puts ``bench/`` itself on ``sys.path`` (pytest's rootdir insertion,
mypy's module mapping). Run the harness as ``python -m bench.http``, never as a script path.
"""
