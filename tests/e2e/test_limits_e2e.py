"""Limits against crowded containers, under a real collectd (Interval 1): MaxInterfaces and MaxValues.

A "crowded" container is one of ours (a sleep in cgroups of its own and a network namespace of its own, as
tests/support/netnsutil.py makes them) that also holds veth pairs of its own inside its namespace, as any
container with CAP_NET_ADMIN there can make them (this kernel has no dummy driver).  What must hold:

- a container with more interfaces than MaxInterfaces reports exactly MaxInterfaces of them, the first by
  ifindex as the kernel lists them (``lo`` aside), the log says so once, naming it and the limit, and its
  CPU and memory figures arrive as before;
- with several such containers, the values of a pass stay under MaxValues: the largest containers' detail
  is cut (their network first), a small one keeps all its values, and every one keeps its CPU and memory
  core.

The pass's values are told apart by collectd's own record of each identifier's last update (the unixsock
LISTVAL answer: ``<time> <identifier>``).
"""

import json
import re
import socket
import time

import pytest

from collectd_cgroups import collector
from tests.support.collectd_harness import HOSTNAME, Collectd
from tests.support.netnsutil import NetLab

MAX_INTERFACES = 8
PAIRS = 10          # veth pairs inside each crowded container: 20 interfaces, with eth0 21 (lo aside)


def listval_times(cd):
    """{identifier: time of its last update} from collectd's unixsock (collectdctl prints no times)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(cd.paths.sock)
        f = s.makefile("rwb")
        f.write(b"LISTVAL\n")
        f.flush()
        head = f.readline().decode()
        count = int(head.split()[0])
        out = {}
        for _ in range(count):
            when, ident = f.readline().decode().split()
            out[ident] = float(when)
        return out


def last_pass(cd, instances):
    """{instance: set of type-type_instance} updated in the latest pass (within 0.5 s of the newest)."""
    times = listval_times(cd)
    ours = {i: t for i, t in times.items() if i.split("/")[1][len("container-"):] in instances}
    newest = max(ours.values())
    out = dict((i, set()) for i in instances)
    for ident, t in ours.items():
        if t >= newest - 0.5:
            _, plugin, type_ = ident.split("/")
            out[plugin[len("container-"):]].add(type_)
    return out


def crowd(box, pairs=PAIRS):
    """``pairs`` veth pairs inside the box's own namespace; its interfaces by ifindex, ``lo`` aside."""
    box.sh("; ".join("ip link add cx%d type veth peer name cy%d" % (n, n) for n in range(pairs)))
    links = json.loads(box.sh("ip -j link show").stdout)
    return [l["ifname"] for l in sorted(links, key=lambda l: l["ifindex"]) if l["ifname"] != "lo"]


def interfaces(types):
    return set(t.split("-", 1)[1] for t in types if t.startswith("if_octets-"))


@pytest.fixture
def lab():
    with NetLab() as lab:
        yield lab


def test_max_interfaces_reports_the_first_by_ifindex_and_says_so_once(tmp_path, lab):
    box = lab.box("crowd")
    names = crowd(box)
    assert len(names) == 2 * PAIRS + 1, names
    match = 'Match "^/%s/(?P<name>[^/]+)$"' % re.escape(lab.tree.prefix)
    with Collectd(str(tmp_path), modules=[[match, "MaxInterfaces %d" % MAX_INTERFACES]]) as cd:
        prefix = "%s/container-cgroup-crowd/" % HOSTNAME
        cd.wait_listval({prefix + "cpu-total", prefix + "memory-usage", prefix + "if_octets-eth0"})
        time.sleep(3.5)         # a few more passes: the limit holds in each, and is logged only once
        seen = interfaces(i.split("/")[2] for i in cd.listval() if i.startswith(prefix))
        assert seen == set(names[:MAX_INTERFACES]), (sorted(seen), names)
        types = last_pass(cd, ["cgroup-crowd"])["cgroup-crowd"]
        assert interfaces(types) == seen
        assert {"cpu-total", "memory-usage", "count-pids"} <= types, sorted(types)
        # cgroup figures still right: one process, our sleep
        assert cd.getval(prefix + "count-pids")["value"] == 1
        said = [l for l in cd.log().splitlines() if "MaxInterfaces" in l]
        assert len(said) == 1, said
        assert box.cgroup in said[0] and "MaxInterfaces %d: %d interfaces" % (MAX_INTERFACES, len(names)) in said[0]
        assert not cd.read_failures()


def test_max_values_cuts_the_largest_containers_detail_first(tmp_path, lab):
    crowded = [lab.box("crowd%d" % n) for n in range(4)]
    for box in crowded:
        crowd(box)
    lab.box("quiet", veth=False)
    instances = ["cgroup-crowd%d" % n for n in range(4)] + ["cgroup-quiet"]
    match = 'Match "^/%s/(?P<name>[^/]+)$"' % re.escape(lab.tree.prefix)
    # First without a ceiling, to know what each container has on this kernel.
    with Collectd(str(tmp_path / "free"), modules=[[match, "MaxInterfaces %d" % MAX_INTERFACES]]) as cd:
        cd.wait_listval({"%s/container-%s/cpu-total" % (HOSTNAME, i) for i in instances})
        time.sleep(3.5)
        full = last_pass(cd, instances)
    counts = dict((i, len(t)) for i, t in full.items())
    assert all(counts["cgroup-crowd%d" % n] > counts["cgroup-quiet"] for n in range(4)), counts
    # A ceiling that the quiet one fits under with room to spare, the crowded ones not.
    ceiling = counts["cgroup-quiet"] + 4 * (counts["cgroup-crowd0"] - 4 * MAX_INTERFACES // 2)
    cap = collector.value_caps(list(counts.values()), ceiling)
    assert cap is not None and counts["cgroup-quiet"] < cap < min(counts["cgroup-crowd%d" % n] for n in range(4)), \
        (counts, ceiling, cap)
    with Collectd(str(tmp_path / "capped"), modules=[[match, "MaxInterfaces %d" % MAX_INTERFACES,
                                                      "MaxValues %d" % ceiling]]) as cd:
        cd.wait_listval({"%s/container-%s/cpu-total" % (HOSTNAME, i) for i in instances})
        time.sleep(3.5)
        capped = last_pass(cd, instances)
        said = [l for l in cd.log().splitlines() if "MaxValues" in l]
        assert not cd.read_failures()
    print("values per container: without MaxValues %s; with MaxValues %d (cap %d): %s"
          % (counts, ceiling, cap, dict((i, len(t)) for i, t in capped.items())))
    assert sum(len(t) for t in capped.values()) <= ceiling
    assert capped["cgroup-quiet"] == full["cgroup-quiet"]          # small: not cut
    for n in range(4):
        name = "cgroup-crowd%d" % n
        assert len(capped[name]) == cap, (name, len(capped[name]), cap)
        assert {"cpu-total", "cpu-user", "cpu-system", "memory-usage", "count-pids"} <= capped[name]
        assert capped[name] <= full[name]
        # network is read last and cut first: every cgroup figure of the container is still there
        cgroup_types = set(t for t in full[name] if not t.startswith("if_"))
        assert cgroup_types <= capped[name], sorted(cgroup_types - capped[name])
        assert len(interfaces(capped[name])) < MAX_INTERFACES
    # logged once per container that the ceiling cut (the first pass, before any count is known, cuts
    # whichever come last; the quiet one may be among them then)
    assert said, cd.log()
    assert all(len([l for l in said if "/%s:" % i.split("-", 1)[1] in l]) <= 1 for i in instances), said
