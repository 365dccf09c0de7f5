"""The benchmark itself (``make bench``, tests/bench/run.py), run small on the real machine.

Its figures are not judged here (nothing fails on time); what is: a small run completes with its own
cross-checks (the traced files equal ``Collector.files_read``, collectd reports the containers), sees
every container with its 14 files a pass (and its limit file every 30 s), 48 values, network and block
I/O, forks nothing during passes, measures its peers (collectd's C cgroups plugin, which writes a CSV directory for every container, and
Netdata, which charts every one), prints its tables, and leaves nothing behind: not after a normal end, not after SIGINT or SIGTERM in
the middle of a collectd measurement, and after a SIGKILL the next run removes what the killed one left.
"""

import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from ccg_lab import synthetic
from tests.bench import lab as bench_lab     # the benchmark's own lab: its names and its cleanup of stale labs
from tests.support import CHECKOUT, TESTS
from tests.support.kernelutil import proc_alive, proc_stat
from tests.support.netnsutil import proc_comm, wait_for

RUN = os.path.join(TESTS, "bench", "run.py")
LAB_LINE = re.compile(r"^lab: cgroups under /(ccgbench-[0-9a-f]+), host namespace (\S+)$")


class Bench(object):
    """tests/bench/run.py in a process of its own; its output collected line by line as it comes."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-u", RUN] + list(args), cwd=CHECKOUT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self):
        return "\n".join(self.lines)

    def line(self, pattern, timeout=120):
        """The first output line matching ``pattern`` (a regular expression), waiting for it."""
        rx = re.compile(pattern)

        def found():
            if self.proc.poll() is not None:
                self._reader.join(5)
            hit = next((l for l in self.lines if rx.search(l)), None)
            if hit is None and self.proc.poll() is not None:
                raise AssertionError("the benchmark ended (status %s) without printing /%s/:\n%s"
                                     % (self.proc.returncode, pattern, self.output()[-4000:]))
            return hit
        return wait_for(found, timeout=timeout, what="benchmark output /%s/" % pattern)

    def lab(self):
        """The lab's cgroup prefix, from the benchmark's own line."""
        return LAB_LINE.match(self.line(LAB_LINE.pattern)).group(1)

    def wait(self, timeout=600):
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()        # our own process, by PID
            self.proc.wait()
            raise AssertionError("the benchmark did not end within %ss:\n%s" % (timeout, self.output()[-4000:]))
        self._reader.join(10)
        return status

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)


def leftovers(prefix):
    """What a lab with cgroup prefix ``prefix`` may leave: cgroup directories in every hierarchy, its host
    network namespace, its scratch directory (in /var/tmp, else /tmp)."""
    found = sorted(d for d in {"%s/%s" % (mp, prefix) for mp in synthetic.read_hierarchies().values()}
                   if os.path.isdir(d))
    host_path = bench_lab.BenchLab(None, tag=prefix[len("ccgbench-"):]).host_path
    if os.path.exists(host_path):
        found.append(host_path)
    found += [d for d in ("/var/tmp/" + prefix, "/tmp/" + prefix) if os.path.exists(d)]
    return found


def children(pid, comm):
    """PIDs of the live children of ``pid`` whose command name is ``comm``."""
    out = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(proc_stat(int(name))[1]) == pid and proc_alive(int(name)) and proc_comm(int(name)) == comm:
                out.append(int(name))
        except (OSError, IndexError):
            continue
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


@pytest.fixture
def benches():
    """Benchmarks started by a test: killed (by PID) if still running at its end, and whatever their labs
    left removed with the benchmark's own cleanup of stale labs, so that a failure leaves nothing."""
    started = []
    yield started
    for bench in started:
        bench.stop()
    bench_lab.cleanup_stale(log=lambda msg: None)


def test_small_run_measures_every_container_and_leaves_nothing(benches):
    bench = Bench("--sizes", "3,6", "--passes", "2", "--intervals", "2", "--rounds", "1", "--paced", "1", "--peers")
    benches.append(bench)
    prefix = bench.lab()
    status = bench.wait()
    out = bench.output()
    assert status == 0, out[-4000:]
    for n in (3, 6):
        # every container seen, with all its files, values, network and block I/O; no fork or exec
        assert ("(a) in-process: %d containers seen, %d with network, %d with block I/O; 14.0 files per pass "
                "(1.0 more every 30 s: limits) and 48.0 values per container; 0 fork/exec/spawn calls in 2 passes"
                % (n, n, n)) in out, out
        assert "(c) floor: " in out
    # collectd ran with the plugin and the plugin did not complain
    assert "collectd log:" not in out, out
    assert len(re.findall(r"^  \(b\) collectd: \d+ descriptors with the plugin", out, re.M)) == 2, out
    # the tables: a row per size with (a), (b), (c), the ratios and collectd's memory; the scaling line
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+) \(\d+-\d+\)\s+(-?[\d.]+) \(-?\d+--?\d+\)\s+([\d.]+) \(\d+-\d+\)\s+"
                      r"([\d.]+)\s+(-?[\d.]+)\s+[\d.]+ \(\d+-\d+\)\s+([\d.]+) / ([\d.]+) / ([+-][\d.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [3, 6], out
    for r in rows:
        a, c, a_over_c = float(r[1]), float(r[3]), float(r[4])
        assert a > 0 and c > 0 and a_over_c == pytest.approx(a / c, abs=0.01)
        assert float(r[7]) > float(r[6]) > 0         # collectd with the plugin is bigger than without
    assert re.search(r"^scaling, cost of a pass at N=6 / at N=3 \(2x the containers\): \(a\) [\d.]+x, "
                     r"\(b\) -?[\d.]+x, \(c\) [\d.]+x$", out, re.M), out
    assert re.search(r"^\s+6\s+-?[\d.]+ \(-?\d+--?\d+\)\s+-?[\d.]+\s+[\d.]+ / \+[\d.]+ / [+-][\d.]+ / [+-][\d.]+$",
                     out, re.M), out                  # (d) and the memory split
    assert re.search(r"^\s+6\s+\(a'\) .* a'/c' [\d.]+ b/c' -?[\d.]+$", out, re.M), out
    assert "IgnoreValue patterns (LEAN in tests/bench/run.py: 15 values per container instead of 48)" in out
    # following renames (names.py): every container of the largest size watched
    assert re.search(r"^runtime names \(6 Docker containers, \d+ passes\), per container and pass: [\d.]+ us with "
                     r"renames followed through inotify \(6 watches\), [\d.]+ us without inotify .*: "
                     r"[+-][\d.]+ and [+-][\d.]+ us$", out, re.M), out
    assert_peers_measured(out, (3, 6))
    assert "cleanup: every process, cgroup, namespace and file of the benchmark removed" in out
    assert leftovers(prefix) == []


PEER_ROW = r"^\s+%d  %s\s+(\d+)\s+(-?[\d.]+) \(-?\d+--?\d+\)\s+(-?[\d.]+|-)\s+(-?[\d.]+|-)\s+(-?[\d.]+|-)$"


def assert_peers_measured(out, sizes):
    """--peers: collectd's C cgroups plugin and Netdata started on the lab's containers and were measured,
    each with a row per size in the peers' table, the plugin's value sets beside them."""
    seen = re.findall(r"^  peers: collectd's cgroups plugin wrote (\d+) containers' CSV files; Netdata charted "
                      r"([\d.]+) charts, ([\d.]+) dimensions per container \(([^)]*)\)$", out, re.M)
    assert [int(x[0]) for x in seen] == list(sizes), out       # every container, by the C plugin's own files
    for _, charts, dims, names in seen:
        # Netdata's cgroups collector on v1: memory, page faults and blkio charts at least
        assert float(charts) >= 5 and float(dims) >= 10 and {"mem", "pgfaults"} <= set(names.split(", ")), out
    for n in sizes:
        rows = {label: re.search(PEER_ROW % (n, re.escape(label)), out, re.M) for label in (
            "collectd_cgroups, default values (48 lists)", "collectd_cgroups, NETDATA_SIZED (18 lists)",
            "collectd_cgroups, NETDATA_SIZED without network (16 lists)", "collectd C cgroups plugin, network writer",
            "collectd C cgroups plugin, CSV writer")}
        rows.update((label, re.search(PEER_ROW % (n, label), out, re.M))
                    for label in (r"Netdata 1\.37 cgroups \(\d+ charts\)",))
        assert all(rows.values()), (sorted(k for k, v in rows.items() if not v), out)
        values = {k: int(v.group(1)) for k, v in rows.items()}
        assert values["collectd_cgroups, default values (48 lists)"] == 56
        assert values["collectd_cgroups, NETDATA_SIZED (18 lists)"] == 22
        assert values["collectd_cgroups, NETDATA_SIZED without network (16 lists)"] == 18
        assert values["collectd C cgroups plugin, network writer"] == values["collectd C cgroups plugin, CSV writer"] == 2
        for label in ("C floor: open, read, close", "C floor: kept open, pread"):
            assert re.search(r"^\s+%d  %s\s+-\s+[\d.]+ \(\d+-\d+\)" % (n, re.escape(label)), out, re.M), out
        assert re.search(r"^\s+%d  Netdata 1\.37 cgroups .* 1\.00\s+\S+$" % n, out, re.M), out
        assert re.search(r"^\s+%d  collectd C cgroups plugin, network writer .* 1\.00$" % n, out, re.M), out
    assert len(re.findall(r"^        per container, NETDATA_SIZED / Netdata: -?[\d.]+; without network: -?[\d.]+ "
                          r"\(network: -?\d+ of its -?\d+ us per container\)$", out, re.M)) == len(sizes), out
    assert "Netdata: not measured" not in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_during_collectd_leaves_nothing(benches, sig):
    bench = Bench("--sizes", "4", "--passes", "2", "--intervals", "30", "--rounds", "1", "--paced", "0")
    benches.append(bench)
    prefix = bench.lab()
    bench.line(r"^  \(c\) floor: ")
    collectd = wait_for(lambda: children(bench.proc.pid, "collectd"), timeout=60, what="a collectd of the benchmark")
    conf = next(a for a in cmdline(collectd[0]) if a.endswith("/collectd.conf"))
    workdir = conf[:conf.index("/", len("/tmp/ccgbench-work-"))]
    assert workdir.startswith("/tmp/ccgbench-work-") and os.path.isdir(workdir)
    assert leftovers(prefix)                          # the lab is there...
    bench.proc.send_signal(sig)
    status = bench.wait(timeout=180)
    out = bench.output()
    assert status == 130, out[-4000:]
    assert "interrupted (signal %d): cleaning up" % sig in out, out
    assert "cleanup: every process, cgroup, namespace and file of the benchmark removed" in out, out
    assert not any(proc_alive(pid) for pid in collectd)     # ...and then its collectd, lab and files are gone
    assert leftovers(prefix) == []
    assert not os.path.exists(workdir)


def test_killed_run_is_cleaned_up_by_the_next(benches):
    killed = Bench("--sizes", "4", "--passes", "400", "--rounds", "1", "--paced", "0", "--no-collectd")
    benches.append(killed)
    prefix = killed.lab()
    killed.line(r"^== N = 4 containers$")
    with open("/var/tmp/%s/owner" % prefix) as f:
        workdir = f.read().split("\n")[2]
    killed.proc.kill()          # SIGKILL: no chance to clean up
    killed.wait(timeout=30)
    assert workdir.startswith("/tmp/ccgbench-work-") and os.path.isdir(workdir)
    # Its container processes end with it (their box sees its stdin close), the rest stays.
    procs = ["%s/%s/cgroup.procs" % (d, name) for d in leftovers(prefix) if d.startswith("/sys/fs/cgroup/")
             for name in os.listdir(d) if name.startswith("c0")]
    assert len(procs) >= 4

    def emptied():
        return all(not open(p).read().strip() for p in procs if os.path.exists(p))
    wait_for(emptied, timeout=30, what="the killed benchmark's container processes to end")
    left = leftovers(prefix)
    host_path = bench_lab.BenchLab(None, tag=prefix[len("ccgbench-"):]).host_path
    assert host_path in left and any(d.startswith("/sys/fs/cgroup/") for d in left)
    nxt = Bench("--sizes", "1", "--passes", "1", "--rounds", "1", "--paced", "0", "--no-collectd")
    benches.append(nxt)
    status = nxt.wait()
    out = nxt.output()
    assert status == 0, out[-4000:]
    assert "removed the leftovers of an earlier run (%s)\n" % prefix in out + "\n", out
    assert leftovers(prefix) == []
    assert not os.path.exists(workdir)
