"""Kernel tier: needs root (real cgroups, network namespaces and veths, synthetic containers)."""

from tests.support.tiers import refuse_without_root


def pytest_collection_modifyitems(items):
    refuse_without_root(items)
