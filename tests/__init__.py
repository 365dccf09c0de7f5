"""The test suite of collectd-cgroups, in tiers (see README.rst, "Development"):

- ``tests/unit/``:   no root, no real cgroups, no namespaces, no daemons (``make test-unit``);
- ``tests/kernel/``: root: real cgroups, real network namespaces and veths, synthetic containers;
- ``tests/e2e/``:    root: real collectd daemons, real runtimes, the v2 guest (``tests/v2guest/``), the
  benchmark (``tests/bench/``).

Shared helpers live in :mod:`tests.support`, fixture trees in ``tests/fixtures/``.  A package (imported
from the checkout's root: ``pythonpath = .`` in setup.cfg), never installed.
"""
