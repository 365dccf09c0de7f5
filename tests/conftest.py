"""Suite-wide guard: the suite leaves no test cgroups behind.  Also the ``lab`` fixture the network test
modules (tests/kernel/) share.  Which tiers need root: tests/kernel/conftest.py, tests/e2e/conftest.py
(tests/support/tiers.py); tests/unit needs none."""

import glob
import os

import pytest

# Prefixes test cgroups are created under (each test adds its own random part).
TEST_PREFIXES = ("ccg-", "collectd-cgroups-demo")


def _leftover_cgroups():
    left = []
    for prefix in TEST_PREFIXES:
        left += glob.glob("/sys/fs/cgroup/*/%s*" % prefix) + glob.glob("/sys/fs/cgroup/%s*" % prefix)
    return sorted(d for d in left if os.path.isdir(d))


def pytest_sessionfinish(session, exitstatus):
    """A test that leaves cgroups behind falsifies the next run's figures: fail the run."""
    left = _leftover_cgroups()
    if left and os.environ.get("PYTEST_XDIST_WORKER") is None:
        print("\nERROR: test cgroups left behind:\n  " + "\n  ".join(left))
        session.exitstatus = 1


@pytest.fixture
def lab():
    """The network tests' lab (tests.support.netnsutil.NetLab): a host namespace and "containers" (sleep
    processes in cgroups of ours), all removed in teardown.  Used by tests/kernel/: test_netns.py,
    test_network.py and test_network_integration.py."""
    from tests.support.netnsutil import NetLab   # here, not at the top: the rest of the suite skips it
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()
