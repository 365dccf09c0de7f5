"""Which tiers need root, and the refusal when they are collected without it.

``tests/kernel/conftest.py`` and ``tests/e2e/conftest.py`` call :func:`refuse_without_root` from their
``pytest_collection_modifyitems``: collected as any other user, tests of those tiers stop the run before
anything runs, with one message naming the tiers.  ``tests/unit`` needs no root.
"""

import os

import pytest

from tests.support import TESTS

#: tier directory -> what in it needs root
ROOT_TIERS = {
    "kernel": "real cgroups, network namespaces and veths, synthetic containers",
    "e2e": "real collectd daemons, container runtimes, the qemu v2 guest, the benchmark",
}


def refuse_without_root(items):
    if os.geteuid() == 0:
        return
    counts = {}
    for item in items:
        rel = os.path.relpath(str(item.path), TESTS).split(os.sep)
        if len(rel) > 1 and rel[0] in ROOT_TIERS:
            counts[rel[0]] = counts.get(rel[0], 0) + 1
    if counts:
        tiers = [t for t in ROOT_TIERS if t in counts]      # kernel, then e2e
        raise pytest.UsageError(
            "%s need%s root (%s): %s collected as uid %d.\n"
            "Run the whole suite as root (make test), or without root only the unit tier: "
            "make test-unit (pytest tests/unit)."
            % (" and ".join("tests/%s/" % t for t in tiers), "" if len(tiers) > 1 else "s",
               "; ".join("%s: %s" % (t, ROOT_TIERS[t]) for t in tiers),
               ", ".join("%d tests of tests/%s/" % (counts[t], t) for t in tiers), os.geteuid()))
