"""Bounds: the log per cause (collector.LogOnce), MaxValues (collector.value_caps, cut, a pass), and
MaxInterfaces's selection (network.select_links).  The real-kernel and real-collectd side of the same
limits is tests/e2e/test_limits_e2e.py."""

import random

import pytest

from collectd_cgroups import collector, network
from collectd_cgroups.netlink import Link
from collectd_cgroups.readers.base import Limit


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_log_once_names_a_few_containers_per_cause_then_counts_the_rest():
    lines = []
    clock = Clock()
    log = collector.LogOnce(lines.append, per_cause=3, window=600, clock=clock)
    for n in range(100):        # 100 containers, one cause (a Python without cffi, a burst of churn)
        log((("cgroup", "c%d" % n), "net", 2), "c%d: network skipped" % n, cause=("net", 2))
        log((("cgroup", "c%d" % n), "net", 2), "c%d: network skipped" % n, cause=("net", 2))   # once per key
    assert lines[:2] == ["c0: network skipped", "c1: network skipped"]
    assert len(lines) == 3 and "more like it are left unsaid for 600 s" in lines[2]
    log(("other",), "another cause", cause="other")
    assert lines[-1] == "another cause"
    clock.now += 601            # a new window: the first message says how many were left out
    log((("cgroup", "late"), "net", 2), "late: network skipped", cause=("net", 2))
    assert lines[-1] == "late: network skipped (and 97 more like it left unsaid in the last 600 s)"
    log(("no cause", 1), "global")      # messages without a cause: once per key, no budget
    log(("no cause", 2), "global 2")
    assert lines[-2:] == ["global", "global 2"]


def test_log_once_memory_is_bounded():
    log = collector.LogOnce(lambda m: None, capacity=50)
    for n in range(10000):
        log(("k", n), "m", cause=("c", n))
    assert len(log._seen) <= 50 and len(log._causes) <= 50


@pytest.mark.parametrize("seed", range(20))
def test_value_caps_fit_the_ceiling_and_cut_the_largest_first(seed):
    rng = random.Random(seed)
    counts = [rng.choice((15, 47, 47, 60, 1000, 1100)) for _ in range(rng.randint(1, 300))]
    ceiling = rng.randint(100, 60000)
    cap = collector.value_caps(counts, ceiling)
    if sum(counts) <= ceiling:
        assert cap is None
        return
    assert cap is not None
    assert sum(min(n, cap) for n in counts) <= ceiling
    # as high as it can be: one more and they would not fit (containers under the cap are not cut)
    assert sum(min(n, cap + 1) for n in counts) > ceiling


def test_cut_keeps_the_core_and_the_first_of_the_rest():
    samples = ([("cpu", "user", (1,)), ("cpu", "system", (1,)), ("cpu", "total", (2,))]
               + [("memory", "f%d" % n, (n,)) for n in range(10)]
               + [("memory", "usage", (5,)), ("memory", "working_set", (4,)), ("count", "pids", (1,))]
               + [("if_octets", "eth%d" % n, (1, 2)) for n in range(5)])
    out = collector.cut(samples, 9)
    assert len(out) == 9
    assert [s[1] for s in out] == ["user", "system", "total", "f0", "f1", "f2", "usage", "working_set", "pids"]
    assert collector.cut(samples, 2) == [s for s in samples if s[:2] in collector.CORE]    # core, whatever
    assert collector.cut(samples, 100) == samples


def _opts(ceiling):
    return collector.Options(root="/", max_values=ceiling, groups=("cpu",))


class FakePlan(object):
    def __init__(self, sizes):
        self.sizes = sizes

    def read(self, container, track, kept=None):
        return [("cpu", "total", (1,))] + [("memory", "f%d" % n, (n,)) for n in range(self.sizes[container.id] - 1)]


def test_a_pass_stays_under_max_values_from_its_first_pass_on():
    from collectd_cgroups.containers import Container
    sizes = dict(("c%d" % n, 10 if n else 500) for n in range(20))      # one big container, 19 small
    conts = [Container("cgroup", cid, cid, "/x/" + cid, inode=n) for n, cid in enumerate(sorted(sizes))]
    logs = []
    c = collector.Collector(_opts(300), warn=logs.append)
    c.network = None
    plan = FakePlan(sizes)
    first = c._collect(conts, plan, None, None)
    # No count known yet: the pass counts its own; the ones past the ceiling keep their core (1 value each)
    assert sum(len(r.samples) for r in first) == 300 + 19
    second = c._collect(conts, plan, None, None)
    by = dict((r.container.id, len(r.samples)) for r in second)
    assert sum(by.values()) <= 300
    assert all(by["c%d" % n] == 10 for n in range(1, 20))  # the small ones whole
    assert by["c0"] == 300 - 190                           # the big one cut to what is left
    assert len([l for l in logs if "MaxValues 300" in l and "/x/c0" in l]) == 1


def L(index, name):
    return Link(index, name, None, None, "veth", (0,) * 16)


def test_select_links_reports_the_first_n_by_ifindex_and_says_how_many_more():
    links = [L(1, "lo")] + [L(i, "v%d" % i) for i in range(40, 1, -1)]      # not in ifindex order
    bad = []
    names = network.select_links(links, bad=bad, limit=8)
    assert list(names) == list(range(2, 10))
    assert [str(b) for b in bad] == ["MaxInterfaces 8: 39 interfaces, the first 8 by ifindex reported"]
    assert isinstance(bad[0], Limit)
    bad = []
    assert len(network.select_links(links, bad=bad, limit=39)) == 39 and bad == []
    # the limit counts what the Interface selection reports, not what it leaves out
    sel = network.InterfaceSelect(["/^v[23]$/"])
    bad = []
    assert network.select_links(links, sel, bad, limit=1) == {2: "v2"}
    assert [str(b) for b in bad] == ["MaxInterfaces 1: 2 interfaces, the first 1 by ifindex reported"]


def test_a_crowded_namespace_asks_for_the_reported_interfaces_only():
    links = [L(1, "lo")] + [L(i, "v%d" % i) for i in range(2, 1002)]
    info = network._NsInfo(links, None, network.InterfaceSelect(), [], limit=16)
    assert len(info.links) == 16 and len(info.checks) == 16 and len(info.names) == 16
    assert info.requests is not None and len(info.requests) == 16 * 28     # one RTM_GETSTATS each
    plain = network._NsInfo(links[:10], None, network.InterfaceSelect(), [], limit=16)
    assert plain.requests is None and len(plain.links) == 10 and len(plain.checks) == 10
    # over the limit, under CROWDED times it: one dump of all, names checked for the reported ones only
    over = network._NsInfo(links[:40], None, network.InterfaceSelect(), [], limit=16)
    assert over.requests is None and len(over.links) == 40 and len(over.checks) == 16
