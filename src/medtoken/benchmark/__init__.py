"""Side-by-side speed, memory and FLOP measurement of models.

``run_benchmark(specs, BenchmarkSettings(...), baseline=..., sweep=...)`` returns one record per
model and benchmark point; ``write_results(records, out_dir, command)`` writes them as JSON, CSV,
Markdown and charts. ``medtoken benchmark`` is the command-line front end.
"""

from medtoken.benchmark.report import write_results
from medtoken.benchmark.runner import BenchmarkSettings, run_benchmark
from medtoken.benchmark.spec import Sweep, parse_sweep

__all__ = [
    "BenchmarkSettings",
    "Sweep",
    "parse_sweep",
    "run_benchmark",
    "write_results",
]
