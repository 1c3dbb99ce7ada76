"""Benchmarks of Mendline (run with ``make bench``; see bench/README.md).

Kept free of imports so ``bench.prefect_dag`` can run under the separate Prefect virtualenv.
"""
