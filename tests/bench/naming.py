"""Benchmark: discovery and naming of N containers whose identifiers collide, next to N that do not.

    .venv/bin/python tests/bench/naming.py [--n 3000] [--passes 7] [--rounds 5] [--plain 0] [--src DIR]

Builds two ``--root`` trees in a temporary directory (a cgroup2 mount in ``proc/self/mountinfo``, no
reader's file anywhere, no runtime state: every container is named by its short id): one with N
Docker-shaped cgroups ``/docker/<64 hex>`` whose ids share their first 12 hex digits (so that their
plugin_instances all collide), one with N ordinary ones.  For each tree it runs the collector's
discovery (``Collector.discover``) and the naming passes (``Naming.begin_pass``, ``name`` for every
container, ``end_pass``) and prints milliseconds per pass:

- ``first``: the first pass (every container new: every collision resolved);
- ``steady``: the median of ``--passes`` passes over the same containers;
- ``arrival``: a pass in which one more container arrives (a colliding one in the colliding tree);

each the median over ``--rounds`` collectors started afresh, and the ratio colliding / ordinary of
each.  ``--plain N`` adds a third tree of N plain (non-container) directories and prints the discovery
pass over it.  ``--src DIR`` measures the collectd_cgroups of another checkout.  Figures only: nothing
here fails on time.
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from srcarg import src_checkout  # noqa: E402
sys.path.insert(0, src_checkout(sys.argv[1:], os.path.dirname(os.path.dirname(HERE))))

from collectd_cgroups.collector import Collector, Options  # noqa: E402

MOUNTINFO = "26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"


def make_root(parent, label):
    root = os.path.join(parent, label)
    os.makedirs(os.path.join(root, "proc", "self"))
    with open(os.path.join(root, "proc", "self", "mountinfo"), "w") as f:
        f.write(MOUNTINFO)
    cg = os.path.join(root, "sys", "fs", "cgroup")
    os.makedirs(os.path.join(cg, "docker"))
    with open(os.path.join(cg, "cgroup.controllers"), "w") as f:
        f.write("cpu io memory pids\n")
    return root, cg


def hex_id(rng, prefix=""):
    return prefix + "".join(rng.choice("0123456789abcdef") for _ in range(64 - len(prefix)))


def add_container(cg, cid):
    os.mkdir(os.path.join(cg, "docker", cid))


def one_pass(collector):
    found = collector.discover()
    naming = collector.naming
    naming.begin_pass(found)
    for c in found:
        naming.name(c)
    naming.end_pass(found)
    return found


def timed(collector):
    t = time.perf_counter()
    found = one_pass(collector)
    return (time.perf_counter() - t) * 1000.0, found


def measure(root, cg, passes, rounds, newcomer):
    """Medians over ``rounds`` collectors (each from its first pass) of (first, steady, arrival) ms."""
    firsts, steadies, arrivals = [], [], []
    for _ in range(rounds):
        collector = Collector(Options(root=root, groups=("cpu",)))
        first, found = timed(collector)
        firsts.append(first)
        steadies.append(statistics.median(timed(collector)[0] for _ in range(passes)))
        add_container(cg, newcomer)
        arrival, after = timed(collector)
        arrivals.append(arrival)
        os.rmdir(os.path.join(cg, "docker", newcomer))
        instances = set(collector.naming.instance_of(c) for c in after)
        assert len(instances) == len(after), "two containers under one name"
    return (statistics.median(firsts), statistics.median(steadies), statistics.median(arrivals), len(found))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="containers in each tree (default 3000)")
    ap.add_argument("--passes", type=int, default=7, help="steady passes measured (median)")
    ap.add_argument("--rounds", type=int, default=5, help="collectors started afresh (median)")
    ap.add_argument("--plain", type=int, default=0, help="also time discovery over this many plain directories")
    ap.add_argument("--src", help="the checkout whose collectd_cgroups is measured")
    args = ap.parse_args(argv)
    rng = random.Random(15)
    tmp = tempfile.mkdtemp(prefix="ccg-bench-naming-")
    try:
        prefix = hex_id(rng)[:12]
        croot, ccg = make_root(tmp, "colliding")
        oroot, ocg = make_root(tmp, "ordinary")
        for _ in range(args.n):
            add_container(ccg, hex_id(rng, prefix))
            add_container(ocg, hex_id(rng))
        rows = [("colliding",) + measure(croot, ccg, args.passes, args.rounds, hex_id(rng, prefix)),
                ("ordinary",) + measure(oroot, ocg, args.passes, args.rounds, hex_id(rng))]
        print("discovery + naming, ms per pass (%s)" % sys.modules["collectd_cgroups"].__file__)
        print("%-10s %10s %10s %10s %11s" % ("tree", "first", "steady", "arrival", "containers"))
        for label, first, steady, arrival, n in rows:
            print("%-10s %10.1f %10.2f %10.2f %11d" % (label, first, steady, arrival, n))
        c, o = rows[0], rows[1]
        print("%-10s %9.2fx %9.2fx %9.2fx" % ("ratio", c[1] / o[1], c[2] / o[2], c[3] / o[3]))
        if args.plain:
            proot, pcg = make_root(tmp, "plain")
            for i in range(args.plain):
                os.makedirs(os.path.join(pcg, "system.slice", "unit-%06d.service" % i))
            collector = Collector(Options(root=proot, groups=("cpu",)))
            collector.discover()
            ms = statistics.median(timed(collector)[0] for _ in range(args.passes))
            print("discovery over %d plain directories: %.2f ms per pass" % (args.plain, ms))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
