"""Benchmarks: one script per question, each printing a side-by-side table and ``RATIO`` lines.

Run them all with ``python -m benchmarks [--quick]`` (``make bench``), or one with
``python -m benchmarks.NAME``. Shared measuring and reporting lives in ``benchmarks._harness``.
"""
