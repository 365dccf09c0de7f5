"""The benchmark (``make bench``): run.py is a script (it measures the checkout given with ``--src``),
lab.py its lab, also imported by tests/e2e/test_bench.py as ``tests.bench.lab``."""
