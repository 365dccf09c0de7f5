"""The plugin under a real collectd daemon, on the real kernel.

Every test builds its collectd.conf from the drop-in block users copy
(conf/collectd-cgroups.conf, see collectd_harness.py), runs /usr/sbin/collectd
and reads back what it stored: collectdctl (unixsock), the CSV files and the
log.  Containers are synthetic (ccg_lab.synthetic): cgroup directories
under a prefix this module owns, with processes it started; expected figures
come from the kernel independently of the plugin (cgroup.procs,
memory.usage_in_bytes, /proc/<pid>/stat).

Interval 1 everywhere; waits are bounded polls, never fixed sleeps that fail.
"""

import os
import re
import secrets
import time

import pytest

from ccg_lab.synthetic import CgroupTree
from collectd_cgroups.fs import FD_FLOOR
from tests.support import collectd_harness as harness
from tests.support.collectd_harness import Collectd, identifier, run_test_mode
from tests.support.kernelutil import CLK_TCK, proc_cpu_ticks

MiB = 1 << 20
RUN = secrets.token_hex(4)

# Deliberately no skip: these tests need root and collectd (`make deps`), which CI has; a machine without
# them should fail loudly rather than pass quietly.


def match_option(prefix, name_pattern="[^/]+", label=None):
    line = 'Match "^/%s/(?P<name>%s)$"' % (prefix, name_pattern)
    return line + (' "%s"' % label if label else "")


@pytest.fixture
def make_tree():
    """CgroupTree factory: prefix ccg-e2e-<run>-<suffix>; every tree is cleaned up, and must leave nothing."""
    trees = []

    def make(suffix):
        tree = CgroupTree("ccg-e2e-%s-%s" % (RUN, suffix))
        trees.append(tree)
        return tree
    yield make
    problems = []
    for tree in trees:
        left = tree.cleanup()
        if left or tree.existing_dirs():
            problems.append((tree.prefix, left, tree.existing_dirs()))
    assert not problems, "cgroups left behind: %r" % problems


def assert_healthy(cd):
    """collectd still runs, no read callback failed (which would double its interval), no traceback."""
    log = cd.log()
    assert cd.alive(), "collectd died:\n%s" % cd.output()
    assert not cd.read_failures(), "read callback failed:\n%s" % log
    assert "Unhandled python exception" not in log and "Traceback" not in log, log


def proc_cpu_centiseconds(pid):
    """utime + stime of one process from /proc/<pid>/stat, in hundredths of a second."""
    return proc_cpu_ticks(pid) * 100.0 / CLK_TCK


def memory_usage_in_bytes(container):
    with open(container.dirs["memory"] + "/memory.usage_in_bytes") as f:
        return int(f.read())


# ---------------------------------------------------------------------------------------------------------
# collectd -T: the drop-in block as users copy it


def test_dropin_block_loads_and_reads_once(tmp_path):
    rc, out = run_test_mode(tmp_path, modules=None)       # the <Module> block exactly as shipped
    assert rc == 0, out
    assert re.search(r"\[info\] collectd_cgroups: instance collectd_cgroups ready; cgroup layout: \w+", out), out
    assert not harness.READ_FAILED.search(out), out
    assert "Unhandled python exception" not in out, out


def test_dropin_with_match_reads_a_container_once(tmp_path, make_tree):
    tree = make_tree("t")
    c = tree.container("once")
    c.spawn(children=1).wait_ready()
    rc, out = run_test_mode(tmp_path, modules=[[match_option(tree.prefix)]])
    assert rc == 0, out
    assert "collectd_cgroups: 1 container(s) found" in out, out
    assert not harness.READ_FAILED.search(out), out
    # (-T stops the write threads without draining their queue: the CSV files may be incomplete.)


BAD_OPTIONS = [
    ('Bogus "x"', "Bogus"),
    ('Match "^/(?P<name>[^/]+$"', "Match"),                   # unbalanced parenthesis
    ('InstanceFormat "{runtime}-{nope}"', "InstanceFormat"),
    ("Interval -1", "Interval"),
    ("Interval 0.0001", "Interval"),
    ('InstanceFormat "{name!r}"', "InstanceFormat"),
    ('HostRoot "/nonexistent"', "HostRoot"),
    ('DockerDataRoot ""', "DockerDataRoot"),
    ("Interval 2", "Interval"),             # a second Interval: the block has "Interval 1" already
]


@pytest.mark.parametrize("line,option", BAD_OPTIONS, ids=[o for _, o in BAD_OPTIONS])
def test_bad_option_stops_collectd_naming_it(tmp_path, line, option):
    rc, out = run_test_mode(tmp_path, modules=[["Interval 1", line]])
    assert rc != 0, out
    assert "Parsing the config file failed" in out, out
    errors = [l for l in out.splitlines() if "[error] collectd_cgroups: configuration error:" in l]
    assert errors, out
    assert re.search(r"configuration error: %s\b" % option, errors[0]), errors
    assert "instance collectd_cgroups ready" not in out, out


# ---------------------------------------------------------------------------------------------------------
# A running daemon and one synthetic container


CPU_SECONDS = 1.0
MEMORY_MIB = 48
CHILDREN = 2


@pytest.fixture
def flow(tmp_path, make_tree):
    tree = make_tree("flow")
    web = tree.container("web")
    proc = web.spawn(cpu_seconds=CPU_SECONDS, memory_mib=MEMORY_MIB, children=CHILDREN).wait_ready()
    cd = Collectd(tmp_path, modules=[[match_option(tree.prefix), "Interval 1"]])
    with cd:
        yield cd, tree, web, proc
        # Printed on failure by pytest, handy when something above went wrong.
        print(cd.log())


EXPECTED = ["cpu-user", "cpu-system", "cpu-total", "derive-cpu_periods", "derive-cpu_throttled_periods",
            "total_time_in_ms-cpu_throttled", "memory-usage", "memory-working_set", "memory-max_usage",
            "derive-memory_failcnt", "memory-rss", "memory-cache", "vmpage_action-pgfault", "count-pids"]


def test_running_collectd_reports_a_synthetic_container(flow):
    cd, tree, web, proc = flow
    wanted = {identifier("cgroup-web", t) for t in EXPECTED}
    if os.path.exists(web.dirs["unified"] + "/cpu.pressure"):
        wanted |= {identifier("cgroup-web", "total_time_in_ms-pressure_%s" % k)
                   for k in ("cpu_some", "memory_some", "memory_full", "io_some", "io_full")}
    listed = cd.wait_listval(wanted)
    mine = sorted(i for i in listed if "/container-cgroup-web/" in i)
    print("%d identifiers for cgroup-web:\n  %s" % (len(mine), "\n  ".join(mine)))
    # "No limit" is not dispatched: this container has none.
    assert identifier("cgroup-web", "memory-limit") not in listed
    assert identifier("cgroup-web", "count-pids_limit") not in listed
    # Nothing but this test's container under the plugin's Match.
    assert {i.split("/")[1] for i in listed if i.startswith("ccg-test/container-cgroup-")} == {"container-cgroup-web"}
    log = cd.log()
    assert "collectd_cgroups: instance collectd_cgroups ready" in log
    assert "collectd_cgroups: 1 container(s) found" in log
    assert_healthy(cd)


def test_pids_match_cgroup_procs(flow):
    cd, tree, web, proc = flow
    ident = identifier("cgroup-web", "count-pids")
    cd.wait_listval({ident})
    procs = web.pids()
    assert sorted(procs) == sorted([proc.pid] + proc.child_pids)
    assert len(procs) == 1 + CHILDREN
    assert cd.getval(ident) == {"value": float(len(procs))}
    rows = cd.wait_csv_rows("cgroup-web", "count-pids", 1)
    assert rows[-1][1] == len(procs)


def test_memory_usage_in_bytes(flow):
    cd, tree, web, proc = flow
    ident = identifier("cgroup-web", "memory-usage")
    cd.wait_listval({ident})
    before = memory_usage_in_bytes(web)
    n = len(cd.wait_csv_rows("cgroup-web", "memory-usage", 1))
    rows = cd.wait_csv_rows("cgroup-web", "memory-usage", n + 1)       # a row written after `before`
    value = cd.getval(ident)["value"]
    after = memory_usage_in_bytes(web)
    print("memory-usage: getval %d, CSV %d, memory.usage_in_bytes %d..%d" % (value, rows[-1][1], before, after))
    assert value >= MEMORY_MIB * MiB
    # The kernel's own figure, in bytes (the workload is idle now: it barely moves).
    slack = 2 * MiB
    for figure in (value, rows[-1][1]):
        assert min(before, after) - slack <= figure <= max(before, after) + slack
    # CSV file named <DataDir>/<host>/container-cgroup-web/memory-usage-<date>
    files = cd.csv_files("cgroup-web", "memory-usage")
    assert files, os.listdir(cd.csv_dir("cgroup-web"))
    assert os.path.dirname(files[-1]) == os.path.join(cd.paths.data, "ccg-test", "container-cgroup-web")
    assert os.path.basename(files[-1])[len("memory-usage-"):] in harness.local_dates(rows[-1][0])


def test_cpu_counters_against_proc_stat(flow):
    cd, tree, web, proc = flow
    cd.wait_listval({identifier("cgroup-web", "cpu-total")})
    n = len(cd.wait_csv_rows("cgroup-web", "cpu-total", 1))
    total = cd.wait_csv_rows("cgroup-web", "cpu-total", n + 1)[-1][1]  # raw counter (StoreRates false)
    own = sum(proc_cpu_centiseconds(pid) for pid in web.pids())
    user = cd.csv_rows("cgroup-web", "cpu-user")[-1][1]
    system = cd.csv_rows("cgroup-web", "cpu-system")[-1][1]
    print("cpu-total %d (user %d + system %d), /proc/<pid>/stat %.1f, workload burnt %.3f s"
          % (total, user, system, own, proc.cpu_used))
    assert total == int(total)
    assert total >= 100 * proc.cpu_used * 0.9
    assert abs(total - own) <= 0.1 * own
    assert abs((user + system) - total) <= 0.1 * total + 2
    # getval turns the DERIVE into a rate: the workload is idle, so (near) zero percent of a core.
    assert cd.getval(identifier("cgroup-web", "cpu-total"))["value"] < 20


def test_containers_come_and_go_while_collectd_runs(flow):
    cd, tree, web, proc = flow
    cd.wait_listval({identifier("cgroup-web", "count-pids")})

    # Started while collectd runs: in one of the following passes.
    created = time.time()
    late = tree.container("late")
    late.spawn(memory_mib=8, children=1).wait_ready()
    cd.wait_listval({identifier("cgroup-late", t) for t in ("count-pids", "memory-usage", "cpu-total")})
    first_late = cd.wait_csv_rows("cgroup-late", "count-pids", 1)[0][0]
    # Passes (rows of the other container, collectd's own timestamps) between creation and appearance.
    passes = sum(1 for t, _ in cd.csv_rows("cgroup-web", "count-pids") if created < t < first_late)
    print("cgroup-late appeared after %d pass(es)" % passes)
    assert passes <= 2, "late container showed up only after %d passes" % passes
    # The number of containers is logged on transitions (none <-> some), not every pass.
    assert cd.log().count("container(s) found") == 1, cd.log()

    # Removed while collectd runs: leaves the flow, the other container keeps flowing.
    late.remove()
    cd.wait_gone(identifier("cgroup-late", ""), timeout=20)
    late_rows = len(cd.csv_rows("cgroup-late", "count-pids"))
    web_rows = len(cd.csv_rows("cgroup-web", "count-pids"))
    cd.wait_csv_rows("cgroup-web", "count-pids", web_rows + 3)
    assert len(cd.csv_rows("cgroup-late", "count-pids")) == late_rows, "removed container still dispatched"
    assert identifier("cgroup-web", "count-pids") in cd.listval()
    assert cd.getval(identifier("cgroup-web", "count-pids")) == {"value": 1.0 + CHILDREN}
    assert_healthy(cd)


def test_two_module_blocks_two_instances(tmp_path, make_tree):
    tree = make_tree("two")
    for name in ("alpha", "beta"):
        tree.container(name).spawn(children=1)
    cd = Collectd(tmp_path, modules=[
        [match_option(tree.prefix, "alpha"), 'InstanceFormat "{runtime}-{name}"'],
        [match_option(tree.prefix, "beta", label="synth"), 'InstanceFormat "x_{name}_{runtime}"',
         'Metrics "pids"'],
    ])
    with cd:
        cd.wait_listval({identifier("cgroup-alpha", "count-pids"), identifier("cgroup-alpha", "memory-usage"),
                         identifier("x_beta_synth", "count-pids")})
        cd.wait_csv_rows("x_beta_synth", "count-pids", 2)
        listed = cd.listval()
        mine = {i.split("/")[1] for i in listed if i.split("/")[1] in (
            "container-cgroup-alpha", "container-cgroup-beta", "container-x_beta_synth", "container-x_alpha_cgroup")}
        assert mine == {"container-cgroup-alpha", "container-x_beta_synth"}, sorted(listed)
        # The second block reads only the pids group.
        assert {i.split("/")[2] for i in listed if "/container-x_beta_synth/" in i} == {"count-pids"}
        assert cd.getval(identifier("x_beta_synth", "count-pids")) == {"value": 2.0}
        log = cd.log()
        assert "instance collectd_cgroups ready" in log and "instance collectd_cgroups-1 ready" in log, log
        assert_healthy(cd)
        # SIGTERM: collectd runs the plugin's shutdown callback and exits cleanly.
        assert cd.stop() == 0, cd.output()
        assert "Exiting normally" in cd.log(), cd.log()
        assert "Unhandled python exception" not in cd.log()


def test_ignore_value_leaves_identifiers_out_of_collectd(tmp_path, make_tree):
    """IgnoreValue under a real collectd: the matching identifiers never reach its cache, the rest do,
    and the values kept are the kernel's."""
    tree = make_tree("ignv")
    box = tree.container("box")
    box.spawn(children=1)
    cd = Collectd(tmp_path, modules=[[match_option(tree.prefix), 'Metrics "memory" "pids"',
                                      'IgnoreValue "memory-*active_*" "vmpage_action-*"',
                                      'IgnoreValue "count-pids"']])
    with cd:
        cd.wait_listval({identifier("cgroup-box", "memory-usage"), identifier("cgroup-box", "memory-rss")})
        cd.wait_csv_rows("cgroup-box", "memory-usage", 2)
        kept = {i.split("/")[2] for i in cd.listval() if "/container-cgroup-box/" in i}
        assert kept, kept
        # Everything of the memory group but the ignored patterns; pids (all of it ignored) not at all.
        assert not [t for t in kept if t.startswith("vmpage_action-") or "active_" in t], sorted(kept)
        assert not [t for t in kept if t.startswith("count-")], sorted(kept)
        assert {"memory-usage", "memory-rss", "memory-cache", "memory-working_set"} <= kept, sorted(kept)
        # Without the option the same container has the ignored identifiers (so the filter did the work).
        with open(box.dirs["memory"] + "/memory.stat") as f:
            fields = {line.split()[0] for line in f}
        assert {"active_anon", "inactive_file", "pgfault"} <= fields
        assert_healthy(cd)


# ---------------------------------------------------------------------------------------------------------
# Resources of the daemon over many passes


CONTAINERS = 12
WARMUP_PASSES = 8
PASSES = 30
RSS_BOUND = 4 * MiB


def _settled_fd_count(cd, samples=5):
    """Fewest open fds over a few samples: a pass in progress holds a cgroup file open for a moment."""
    counts = []
    for _ in range(samples):
        counts.append(cd.fd_count())
        time.sleep(0.05)
    return min(counts)


def _kept_fds(cd, pidfds=False):
    """Descriptors of collectd numbered from the plugin's kept-file floor up (fs.FD_FLOOR): its kept cgroup
    files, or with ``pidfds`` its kept pidfds (one per container whose network namespace it reads)."""
    found = []
    for n in os.listdir("/proc/%d/fd" % cd.pid):
        if int(n) >= FD_FLOOR:
            try:
                target = os.readlink("/proc/%d/fd/%s" % (cd.pid, n))
            except OSError:
                continue
            if ("pidfd" in target) == pidfds:
                found.append(n)
    return found


@pytest.mark.parametrize("keep", ["auto", "true"])
def test_fds_and_rss_stay_flat_over_many_passes(tmp_path, make_tree, keep):
    """With 12 containers at Interval 1, "auto" reads every file the plain way; "true" keeps them open,
    and the descriptors of the containers that come and go must be closed as they go."""
    tree = make_tree("leak")
    for n in range(CONTAINERS):
        tree.container("c%02d" % n).spawn(children=1 if n % 3 == 0 else 0)
    cd = Collectd(tmp_path, modules=[[match_option(tree.prefix), "Interval 1", "KeepFilesOpen %s" % keep]])
    with cd:
        anchor = ("cgroup-c00", "count-pids")
        cd.wait_csv_rows(*anchor, WARMUP_PASSES, timeout=WARMUP_PASSES * 3 + 10)
        start_rows = len(cd.csv_rows(*anchor))
        fds0, rss0, threads0 = _settled_fd_count(cd), cd.rss_bytes(), cd.threads()
        kept0, pidfds0 = len(_kept_fds(cd)), len(_kept_fds(cd, pidfds=True))
        assert pidfds0 <= CONTAINERS, pidfds0
        if keep == "true":      # about a dozen files per container (cgroup.procs is never kept)
            assert kept0 >= 10 * CONTAINERS, kept0
        else:
            assert kept0 == 0, kept0
        churned = 0
        for i in range(PASSES):
            cd.wait_csv_rows(*anchor, start_rows + i + 1, timeout=15)
            # Churn: a container that comes and goes keeps discovery's caches moving.
            name = "churn%d" % (i % 3)
            if name in tree.containers:
                tree.containers[name].remove()
            else:
                tree.container(name)
                churned += 1
        # One more pass: the files of a container removed just now are closed by the pass that misses it.
        cd.wait_csv_rows(*anchor, start_rows + PASSES + 2, timeout=15)
        fds1, rss1, threads1 = _settled_fd_count(cd), cd.rss_bytes(), cd.threads()
        assert len(_kept_fds(cd)) == kept0 and len(_kept_fds(cd, pidfds=True)) == pidfds0
        passes = len(cd.csv_rows(*anchor)) - start_rows
        print("collectd pid %d over %d passes of %d containers (+%d churned): fds %d -> %d, "
              "RSS %.1f -> %.1f MiB (%+d KiB), threads %d -> %d"
              % (cd.pid, passes, CONTAINERS, churned, fds0, fds1, rss0 / MiB, rss1 / MiB,
                 (rss1 - rss0) // 1024, threads0, threads1))
        assert passes >= PASSES
        assert fds1 <= fds0, "fd count grew from %d to %d" % (fds0, fds1)
        assert rss1 - rss0 < RSS_BOUND, "RSS grew by %d KiB" % ((rss1 - rss0) // 1024)
        assert threads1 <= threads0
        assert_healthy(cd)
