"""timeit of every reader's parse over real files: the fixtures captured from real kernels and, when
readable, this host's own top cgroups (read only).  Microseconds per parse, best of 5.

    .venv/bin/python -m tests.bench.parsers_timeit [--number N]

Not a test: a before/after tool for parser changes (issue 15's field-level containment)."""

import argparse
import os
import timeit

from collectd_cgroups import readers
from tests.support import FIXTURES

HYB_ID = "42d3110fba6d07b2eecbaeb61e740cbe171b74c89da98ae5a4afccf80fecad77"
V2G_ID = "ed404250ec7e89b86f3ec91b1b6621a1f6045949b5a6c221f43ca9fcd7a226aa"

# (label, version, {controller: directory}); "unified" for the v2 mount.
CASES = [
    ("hybrid-debian12 docker (v1)", 1, dict(
        (c, os.path.join(FIXTURES, "hybrid-debian12/sys/fs/cgroup", c, "docker", HYB_ID))
        for c in ("cpu", "cpuacct", "memory", "blkio", "pids"))),
    ("v2-guest-captured docker (v2)", 2, {"unified": os.path.join(
        FIXTURES, "v2-guest-captured/sys/fs/cgroup/system.slice/docker-%s.scope" % V2G_ID)}),
    ("blkio-v1-throttle docker web (v1, 4 devices)", 1, {"blkio": os.path.join(
        FIXTURES, "blkio-v1-throttle/sys/fs/cgroup/blkio/docker/"
        "92adc27908a55fead388a11f6be7e6796f0ae4d5986054ba899545c87c026fd6")}),
    ("blkio-v2-iostat docker pg (v2, 4 devices)", 2, {"unified": os.path.join(
        FIXTURES, "blkio-v2-iostat/sys/fs/cgroup/system.slice/"
        "docker-b90947bf72fa04629a485d8b324275a670197b0b09aae99b0e5d96098cdc9e4c.scope")}),
    ("this host's v1 top cgroups", 1, dict((c, "/sys/fs/cgroup/" + c)
                                           for c in ("cpu", "cpuacct", "memory", "blkio", "pids"))),
]


def load(directory, files):
    data = {}
    for entry in files:
        for name in (entry if isinstance(entry, tuple) else (entry,)):
            try:
                with open(os.path.join(directory, name), "rb") as f:
                    data[name] = f.read()
                break
            except OSError:
                continue
    return data


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args(argv)
    for label, version, dirs in CASES:
        total = 0.0
        rows = []
        for reader in readers.build(readers.GROUPS, per_cpu=False):
            if version == 1:
                directory = dirs.get(reader.controller)
                files = reader.files_v1
                parse = reader.parse_v1
            else:
                directory = dirs["unified"]
                files = reader.files_v2
                parse = reader.parse_v2
            if directory is None or not files or not os.path.isdir(directory):
                continue
            data = load(directory, files)
            if not data:
                continue
            n = args.number
            best = min(timeit.repeat(lambda: parse(data, []), number=n, repeat=5)) / n * 1e6
            total += best
            rows.append("  %-14s %-10s %6.2f us  (%d files, %d samples)"
                        % (type(reader).__name__, reader.controller, best, len(data), len(parse(data, []))))
        print("%s: %.2f us per container" % (label, total))
        print("\n".join(rows))


if __name__ == "__main__":
    main()
