"""End-to-end tier: needs root (real collectd daemons, container runtimes, the v2 guest, the benchmark)."""

from tests.support.tiers import refuse_without_root


def pytest_collection_modifyitems(items):
    refuse_without_root(items)
