"""Side-by-side benchmarks against the emulator: ``python -m bench [--quick]``.

Owns the benchmark harness. Every figure is a ratio measured in one run, with its raw
numbers: rate-limit efficiency (:mod:`bench.rate`), prompt-cache cost (:mod:`bench.cache`),
per-request overhead (:mod:`bench.overhead`) and batch memory at scale
(:mod:`bench.scale`). :mod:`bench.report` writes ``bench/results.json``,
``docs/benchmarks.md`` and ``docs/benchmarks.svg``.
"""
