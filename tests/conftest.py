"""Suite-wide guards: the suite runs as root on a real kernel, and leaves nothing behind.  Also the
``lab`` fixture the network test modules share."""

import glob
import os

import pytest

# Prefixes test cgroups are created under (each test adds its own random part).
TEST_PREFIXES = ("ccg-", "collectd-cgroups-demo")


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        raise pytest.UsageError("the suite creates real cgroups and runs collectd: run it as root (make test)")


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
    """test_network's lab (netnsutil.NetLab): a host namespace and "containers" (sleep processes in cgroups
    of ours), all removed in teardown.  Used by test_netns.py, test_network.py and
    test_network_integration.py."""
    from netnsutil import NetLab     # here, not at the top: the rest of the suite (and the v2 guest) skips it
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()
