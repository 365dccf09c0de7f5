"""A ``--root`` tree where each numeric file of one container in turn holds ``max``, nothing, a negative
number, 2**70 or non-ASCII digits: every other figure of that container is still reported, with the value
of the intact tree, and the figures of that file (and those derived from it) are absent, not None.

Trees: copies of tests/fixtures/v2-pure (cgroup v2) and tests/fixtures/hybrid-debian12 (v1 controllers,
pressure from the cgroup2 mount), made in tmp_path; one pass of collector.Collector(Options(root=...)).
"""

import os
import shutil

import pytest

from collectd_cgroups.collector import Collector, Options
from tests.support import FIXTURES

BAD = [b"max\n", b"", b"-1\n", b"%d\n" % 2 ** 70, "١٢٣\n".encode()]

V2_ID = "67490dfe16f03ced6edb0d7f2c56b1726ec290fd7f18eebfb6054fa446663165"
HYB_ID = "42d3110fba6d07b2eecbaeb61e740cbe171b74c89da98ae5a4afccf80fecad77"

# tree -> (plugin_instance, {file: directory under sys/fs/cgroup})
TREES = {
    "v2-pure": ("docker-api", dict((f, "system.slice/docker-%s.scope" % V2_ID) for f in (
        "cpu.stat", "memory.stat", "memory.current", "memory.peak", "memory.max", "memory.high",
        "memory.swap.current", "memory.swap.max", "memory.events", "io.stat", "pids.current", "pids.max",
        "cpu.pressure", "memory.pressure", "io.pressure"))),
    "hybrid-debian12": ("docker-web1", dict(
        [(f, "cpuacct/docker/" + HYB_ID) for f in ("cpuacct.stat", "cpuacct.usage")]
        + [("cpu.stat", "cpu/docker/" + HYB_ID)]
        + [(f, "memory/docker/" + HYB_ID) for f in ("memory.stat", "memory.usage_in_bytes",
                                                    "memory.max_usage_in_bytes", "memory.failcnt")]
        + [(f, "pids/docker/" + HYB_ID) for f in ("pids.current", "pids.max")]
        + [(f, "unified/docker/" + HYB_ID) for f in ("cpu.pressure", "memory.pressure", "io.pressure")])),
}

V2_CPU = {"usage_usec": ("cpu", "total"), "user_usec": ("cpu", "user"), "system_usec": ("cpu", "system"),
          "nr_periods": ("derive", "cpu_periods"), "nr_throttled": ("derive", "cpu_throttled_periods"),
          "throttled_usec": ("total_time_in_ms", "cpu_throttled"), "throttled_time": (
              "total_time_in_ms", "cpu_throttled")}


def lost(tree, name, key):
    """Whether identifier ``key`` comes from file ``name`` (or derives from it)."""
    t, ti = key
    if name in ("cpu.stat",):
        return key in V2_CPU.values() if tree == "v2-pure" else key in (
            ("derive", "cpu_periods"), ("derive", "cpu_throttled_periods"), ("total_time_in_ms", "cpu_throttled"))
    if name == "cpuacct.stat":
        return key in (("cpu", "user"), ("cpu", "system"))
    if name == "cpuacct.usage":
        return key == ("cpu", "total")
    if name == "memory.stat":
        single = {"usage", "max_usage", "high", "swap_usage", "swap_limit"} | (
            {"limit"} if tree == "v2-pure" else set())
        return t == "vmpage_action" or (t == "memory" and ti not in single)
    if name in ("memory.current", "memory.usage_in_bytes"):
        return key in (("memory", "usage"), ("memory", "working_set"))
    if name.endswith(".pressure"):
        return t == "total_time_in_ms" and ti.startswith("pressure_%s_" % name.split(".")[0])
    if name == "io.stat":
        return t.startswith("disk_") or t.startswith("total_bytes") or t.startswith("total_operations")
    if name == "memory.events":
        return t == "derive" and ti.startswith("memory_") and ti != "memory_failcnt"
    return key == {"memory.peak": ("memory", "max_usage"), "memory.max_usage_in_bytes": ("memory", "max_usage"),
                   "memory.max": ("memory", "limit"), "memory.high": ("memory", "high"),
                   "memory.swap.current": ("memory", "swap_usage"), "memory.swap.max": ("memory", "swap_limit"),
                   "memory.failcnt": ("derive", "memory_failcnt"), "pids.current": ("count", "pids"),
                   "pids.max": ("count", "pids_limit")}[name]


def collect(root):
    warnings = []
    results = Collector(Options(root=root), warn=warnings.append, info=lambda m: None).collect()
    out = {}
    for r in results:
        per = out.setdefault(r.instance, {})
        for t, ti, values in r.samples:
            assert (t, ti) not in per
            assert all(type(v) is int for v in values), (t, ti, values)
            per[(t, ti)] = values
    return out, warnings


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """{tree: (root, the intact pass)}: one copy per tree, each file restored after its test."""
    out = {}
    for tree in TREES:
        root = os.path.join(str(tmp_path_factory.mktemp("bad-numbers")), tree)
        shutil.copytree(os.path.join(FIXTURES, tree), root, symlinks=True)
        out[tree] = (root, collect(root)[0])
    return out


CASES = [(tree, name) for tree in TREES for name in sorted(TREES[tree][1])]


@pytest.mark.parametrize("tree, name", CASES)
def test_a_bad_number_costs_that_file_only(trees, tree, name):
    root, pristine = trees[tree]
    instance, where = TREES[tree]
    path = os.path.join(root, "sys/fs/cgroup", where[name], name)
    with open(path, "rb") as f:
        intact = f.read()
    whole = pristine[instance]
    gone = set(k for k in whole if lost(tree, name, k))
    if name not in ("memory.max", "memory.high", "memory.swap.max", "pids.max") or intact.strip() != b"max":
        assert gone, "%s gives nothing in the intact tree: a useless case" % name
    try:
        for token in BAD:
            with open(path, "wb") as f:
                f.write(token)
            got, warnings = collect(root)
            assert set(got) == set(pristine), token                 # no container lost
            for other in pristine:
                if other != instance:
                    assert got[other] == pristine[other]
            expected = dict((k, v) for k, v in whole.items() if k not in gone)
            assert got[instance] == expected, (name, token)
            if token.strip() != b"max" or name not in ("memory.max", "memory.high", "memory.swap.max", "pids.max"):
                if token.strip() or name not in ("io.stat",) and not name.endswith(".pressure") \
                        and name not in ("cpu.stat", "cpuacct.stat", "memory.stat", "memory.events"):
                    assert any(name in w for w in warnings), (name, token, warnings)
    finally:
        with open(path, "wb") as f:
            f.write(intact)


def _lines(tree, name):
    instance, where = TREES[tree]
    with open(os.path.join(FIXTURES, tree, "sys/fs/cgroup", where[name], name), "rb") as f:
        return f.read().split(b"\n")


LINE_CASES = [(tree, name, n) for tree, name in (("v2-pure", "memory.stat"), ("v2-pure", "cpu.stat"),
                                                 ("hybrid-debian12", "cpuacct.stat"), ("hybrid-debian12", "cpu.stat"),
                                                 ("v2-pure", "memory.events"))
              for n, line in enumerate(_lines(tree, name)) if line]


def _line_lost(tree, name, field, key):
    t, ti = key
    if name == "memory.stat":
        return ti == field or (field == "inactive_file" and ti == "working_set")
    if name == "memory.events":
        return key == ("derive", "memory_" + field)
    if name == "cpuacct.stat":
        return key == ("cpu", field)
    return key == V2_CPU.get(field)


@pytest.mark.parametrize("tree, name, n", LINE_CASES)
def test_a_bad_value_on_one_line_costs_that_field_only(trees, tree, name, n):
    root, pristine = trees[tree]
    instance, where = TREES[tree]
    path = os.path.join(root, "sys/fs/cgroup", where[name], name)
    with open(path, "rb") as f:
        intact = f.read()
    lines = intact.split(b"\n")
    field = lines[n].split(b" ")[0]
    try:
        for token in BAD:
            lines[n] = field + b" " + token.strip()
            with open(path, "wb") as f:
                f.write(b"\n".join(lines))
            got, warnings = collect(root)
            expected = dict((k, v) for k, v in pristine[instance].items()
                            if not _line_lost(tree, name, field.decode(), k))
            assert got[instance] == expected, (field, token)
            assert any(field.decode() in w for w in warnings), warnings
    finally:
        with open(path, "wb") as f:
            f.write(intact)
