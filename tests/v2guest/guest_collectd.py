"""A real collectd on the real cgroup v2 kernel (runs inside the v2 guest; see run.py).

The host's Debian collectd (/usr/sbin/collectd, its python plugin and libpython3.11, shared into
the guest read-only) loads the plugin from this checkout through the drop-in block
(tests/support/collectd_harness.py), with unixsock and csv (StoreRates false: counters stay raw).  What
it stores is read back and compared with an in-process pass and with the kernel's files.
"""

import os
import tempfile

import pytest

from tests.support.collectd_harness import Collectd, identifier

from tests.v2guest import guest_sources as src
from tests.v2guest.guest_world import BOX_LIMIT, DOCKER_HIGH, DOCKER_PIDS_MAX

from collectd_cgroups.collector import Collector, Options


def module_options(world):
    return ['Match "%s"' % world.match[0][0], 'Runtimes "docker" "podman"', 'DockerDataRoot "%s"' % world.docker_root]


@pytest.fixture(scope="module")
def daemon(world):
    workdir = tempfile.mkdtemp(prefix="ccg-collectd-")
    start = {path: src.snapshot(d) for path, (d, _) in world.containers.items()}
    with Collectd(workdir, modules=[module_options(world)], interval=1) as cd:
        cd.start_snapshot = start
        yield cd
        assert cd.alive(), "collectd died:\n%s" % cd.output()


def in_process_identifiers(world):
    """{instance: {"type-type_instance"}} from one in-process pass with the same options."""
    collector = Collector(Options(match=world.match, runtimes=("docker", "podman"), docker_root=world.docker_root))
    out = {}
    for item in collector.collect():
        out[item.instance] = {"%s-%s" % (t, ti) for t, ti, _ in item.samples}
    return out


def test_collectd_stores_every_identifier_of_both_containers(world, daemon):
    expected = in_process_identifiers(world)
    assert sorted(expected) == sorted(instance for _, instance in world.containers.values())
    wanted = {identifier(inst, ident) for inst, idents in expected.items() for ident in idents}
    listed = daemon.wait_listval(wanted, timeout=90)
    ours = {i for i in listed if "/container-" in i}
    print("collectd lists %d identifiers of the plugin" % len(ours))
    assert ours == wanted, "listed but not expected: %s; expected but not listed: %s" % (
        sorted(ours - wanted), sorted(wanted - ours))
    assert not daemon.read_failures(), daemon.log()


def test_gauges_over_unixsock_match_the_kernel(world, daemon):
    box, docker = "cgroup-box", "docker-web"
    daemon.wait_listval({identifier(box, "memory-limit"), identifier(docker, "count-pids_limit")}, timeout=90)
    # unixsock prints values with 7 significant digits (1.006633e+08)
    assert daemon.getval(identifier(box, "memory-limit"))["value"] == pytest.approx(BOX_LIMIT, rel=1e-6)
    assert daemon.getval(identifier(docker, "memory-high"))["value"] == pytest.approx(DOCKER_HIGH, rel=1e-6)
    limit_rows = daemon.wait_csv_rows(box, "memory-limit", 1, timeout=90)     # CSV: every digit
    assert limit_rows[-1][1] == BOX_LIMIT
    assert daemon.getval(identifier(docker, "count-pids_limit")) == {"value": DOCKER_PIDS_MAX}
    for inst, path, d in ((box, world.box.path, world.box_dir), (docker, world.docker.path, world.docker_dir)):
        now = src.snapshot(d)
        assert daemon.getval(identifier(inst, "count-pids")) == {"value": now["pids.current"]} == {"value": 3}
        usage = daemon.getval(identifier(inst, "memory-usage"))["value"]
        print("%s: memory-usage over unixsock %.1f MiB, memory.current now %.1f MiB"
              % (inst, usage / 2 ** 20, now["memory.current"] / 2 ** 20))
        assert usage == pytest.approx(now["memory.current"], rel=0.05)
        peak = daemon.getval(identifier(inst, "memory-max_usage"))["value"]
        assert peak <= now["memory.peak"] * (1 + 1e-6)
    assert BOX_LIMIT * 0.9 <= daemon.getval(identifier(box, "memory-max_usage"))["value"] <= BOX_LIMIT * (1 + 1e-6)


def test_counters_in_csv_match_the_kernel(world, daemon):
    """DERIVE values, raw in the CSV files, lie between the kernel's figures from before collectd
    started and now."""
    box, docker = "cgroup-box", "docker-web"
    rows = daemon.wait_csv_rows(box, "derive-memory_oom_kill", 1, timeout=90)
    assert rows[-1][1] == 1, rows
    for inst, path, d in ((box, world.box.path, world.box_dir), (docker, world.docker.path, world.docker_dir)):
        before = daemon.start_snapshot[path]
        checked = 0
        for ident in ("cpu-total", "cpu-user", "cpu-system", "derive-cpu_periods", "derive-memory_max",
                      "vmpage_action-pgfault", "total_time_in_ms-pressure_memory_some"):
            type_, type_instance = ident.split("-", 1)
            rows = daemon.wait_csv_rows(inst, ident, 1, timeout=90)
            now = src.snapshot(d)
            lo = src.expected_value(type_, type_instance, before)[0]
            hi = src.expected_value(type_, type_instance, now)[0]
            for row in rows:
                assert lo <= row[1] <= hi, (inst, ident, row, lo, hi)
            checked += 1
        assert checked == 7
    # the box's block I/O, once the plugin emits it (disk_octets: epoch, read, write)
    disk = [f for f in os.listdir(daemon.csv_dir(box)) if f.startswith("disk_octets-") and "-total-" not in f]
    if disk:
        rows = daemon.csv_rows(box, disk[0].rsplit("-", 3)[0])
        assert rows and rows[-1][2] >= world.io["direct_written"] + world.io["buffered_written"], rows


def test_collectd_log_says_v2_and_nothing_went_wrong(world, daemon):
    log = daemon.log()
    ready = [line for line in log.splitlines() if "collectd_cgroups: instance" in line and "ready" in line]
    assert ready and "cgroup layout: v2" in ready[0], log
    assert "%d container(s) found" % len(world.containers) in log, log
    problems = [line for line in log.splitlines()
                if "collectd_cgroups" in line and ("[warning]" in line or "[error]" in line)]
    assert not problems, "\n".join(problems)
    assert not daemon.read_failures()
