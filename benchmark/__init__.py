"""Flocker's benchmark suite: scenarios measured against same-run baselines.

Each scenario is a module ``benchmark/<name>.py`` with a ``run(options)``
coroutine-or-function returning a results dict; ``benchmark/run <name>``
executes it and writes ``benchmark/results/<name>.json`` and ``<name>.png``.
Figures that are compared are ratios against a baseline measured in the same
run, because these machines are shared and noisy.
"""
