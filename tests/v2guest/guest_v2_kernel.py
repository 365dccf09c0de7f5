"""The plugin on a real pure cgroup v2 kernel (runs inside the v2 guest; see run.py).

Each figure the plugin emits is compared with the kernel's own files, read by guest_sources.py's
parsers, and where a process can tell, with the processes' own /proc/<pid>/stat and status.
The containers are the session's ``world`` (guest_world.py).
"""

import contextlib
import io
import json
import os
import subprocess
import tempfile

import pytest

from tests.v2guest import guest_sources as src
from tests.v2guest.guest_world import (BOX_LIMIT, BOX_TOUCH_MIB, CG, CLK_TCK, DIRECT_MIB, DOCKER_BURN, DOCKER_HIGH,
                                 DOCKER_PIDS_MAX, PODMAN_BURN, MiB, REPORT)

from collectd_cgroups import __main__ as cli
from collectd_cgroups import containers, hierarchy, identifiers
from collectd_cgroups.collector import Collector, Options


class Logs(object):
    def __init__(self):
        self.warn, self.info = [], []


def collector_for(world, **options):
    options.setdefault("match", world.match)
    options.setdefault("runtimes", ("docker", "podman"))
    options.setdefault("docker_root", world.docker_root)
    logs = Logs()
    return Collector(Options(**options), warn=logs.warn.append, info=logs.info.append), logs


def one_pass(world, **options):
    """({cgroup: ContainerSamples}, {cgroup: snapshot before}, {cgroup: snapshot after}, logs)."""
    collector, logs = collector_for(world, **options)
    dirs = {path: d for path, (d, _) in world.containers.items()}
    before = {path: src.snapshot(d) for path, d in dirs.items()}
    results = {r.container.cgroup: r for r in collector.collect()}
    after = {path: src.snapshot(d) for path, d in dirs.items()}
    return results, before, after, logs


def values(item):
    return {(t, ti): v for t, ti, v in item.samples}


def within(value, a, b):
    return min(a, b) <= value <= max(a, b)


@pytest.fixture(scope="module")
def passed(world):
    return one_pass(world)


# -- the layout --------------------------------------------------------------------------------------------


def test_the_kernel_runs_cgroup_v2_only():
    assert "cgroup_no_v1=all" in src.kernel_cmdline()
    # every controller the kernel has sits on the unified hierarchy (id 0) ...
    ids = src.proc_cgroups()
    assert {"cpu", "memory", "pids", "blkio", "io"} & set(ids) and set(ids.values()) == {0}, ids
    # ... only cgroup2 is mounted ...
    fstypes = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            right = line.split(" - ", 1)[1].split()
            if right[0].startswith("cgroup"):
                fstypes.append((right[0], line.split()[4]))
    assert fstypes == [("cgroup2", CG)]
    # ... and a v1 hierarchy cannot be mounted at all
    target = tempfile.mkdtemp()
    try:
        res = subprocess.run(["/bin/busybox", "mount", "-t", "cgroup", "-o", "memory", "cgroup", target],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert res.returncode != 0, "a v1 memory hierarchy was mounted on a cgroup_no_v1=all kernel"
    finally:
        os.rmdir(target)
    with open(CG + "/cgroup.controllers") as f:
        assert {"cpu", "io", "memory", "pids"} <= set(f.read().split())


def test_hierarchy_detection_says_pure_v2():
    hier = hierarchy.load("/")
    assert hier.mode == "v2"
    assert hier.unified is not None and (hier.unified.version, hier.unified.path) == (2, CG)
    for controller in hierarchy.V1_CONTROLLERS:
        assert hier.mount_for(controller) is hier.unified, controller
    assert [m.path for m in hier.walk_mounts()] == [CG]
    with open(CG + "/cgroup.controllers") as f:
        assert hier.v2_controllers == frozenset(f.read().split())
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["--layout"]) == 0
    lines = out.getvalue().splitlines()
    print(out.getvalue())
    assert lines[0] == "cgroup layout: v2"
    for controller in hierarchy.V1_CONTROLLERS:
        assert any(l.split() == [controller, "v2", CG] for l in lines), (controller, lines)


def test_the_guest_is_sealed_off():
    """No network device but loopback; the host's root is an overlay whose writes stay in the guest
    (the host checks the canary file below is not on its disk)."""
    assert sorted(os.listdir("/sys/class/net")) == ["lo"]
    with open("/proc/self/mountinfo") as f:
        root = [l.split(" - ", 1)[1].split() for l in f if l.split()[4] == "/"]
    assert [r[0] for r in root] == ["overlay"], root
    canary = os.environ.get("CCG_V2GUEST_CANARY")
    assert canary, "run.py sets CCG_V2GUEST_CANARY"
    with open(canary, "w") as f:
        f.write("written inside the v2 guest; must not reach the host\n")
    with open(os.path.join(REPORT, "guest-facts.json"), "w") as f:
        json.dump({"uname": src.uname_release(), "net": sorted(os.listdir("/sys/class/net")),
                   "cmdline": src.kernel_cmdline(), "canary": canary}, f)


# -- discovery ---------------------------------------------------------------------------------------------


def test_discovery_finds_the_matches_and_the_runtime_scopes(world):
    results, _, _, logs = one_pass(world)
    assert {path: r.instance for path, r in results.items()} == {
        path: instance for path, (_, instance) in world.containers.items()}
    box, docker, podman = results[world.box.path], results[world.docker.path], results[world.podman.path]
    assert box.container.runtime == "cgroup" and results[world.bare.path].container.runtime == "cgroup"
    assert (docker.container.runtime, docker.container.id) == ("docker", world.docker_id)
    assert (podman.container.runtime, podman.container.id) == ("podman", world.podman_id)
    for path, (d, _) in world.containers.items():
        assert results[path].container.dirs == {CG: d}
    assert world.docker.path == "/system.slice/docker-%s.scope" % world.docker_id
    assert world.podman.path == "/machine.slice/libpod-%s.scope" % world.podman_id
    assert not logs.warn, logs.warn


def test_discovery_with_every_runtime_and_without_match(world):
    results, _, _, logs = one_pass(world, runtimes=containers.RUNTIMES)
    assert sorted(results) == sorted(world.containers)
    results, _, _, logs = one_pass(world, match=[])
    assert sorted(results) == sorted([world.docker.path, world.podman.path])
    assert not logs.warn, logs.warn


# -- every identifier against the kernel's files -----------------------------------------------------------


def test_every_identifier_matches_the_kernel_files(world, passed):
    results, before, after, logs = passed
    assert not logs.warn, logs.warn
    problems, counted = [], 0
    for path, item in sorted(results.items()):
        emitted = {(t, ti) for t, ti, _ in item.samples}
        assert len(emitted) == len(item.samples), "an identifier dispatched twice in %s" % path
        wanted = src.expected_identifiers(after[path])
        non_disk = {k for k in emitted if not src.is_disk(*k)}
        missing, extra = wanted - non_disk, non_disk - wanted
        if missing or extra:
            problems.append("%s: missing %s, not expected %s" % (path, sorted(missing), sorted(extra)))
        for type_, type_instance, vals in item.samples:
            counted += 1
            ds = identifiers.data_sources(type_)
            if len(vals) != len(ds) or not all(isinstance(v, int) and v >= 0 for v in vals):
                problems.append("%s %s-%s: bad values %r for %s" % (path, type_, type_instance, vals, ds))
                continue
            try:
                lo = src.expected_value(type_, type_instance, before[path])
                hi = src.expected_value(type_, type_instance, after[path])
            except KeyError:
                problems.append("%s %s-%s = %r: no source on cgroup v2 (unchecked identifier)"
                                % (path, type_, type_instance, vals))
                continue
            if not all(within(v, a, b) for v, a, b in zip(vals, lo, hi)):
                problems.append("%s %s-%s = %r, kernel files say %r .. %r" % (path, type_, type_instance, vals, lo, hi))
    print("%d values of %d containers checked against the kernel's files" % (counted, len(results)))
    assert not problems, "\n".join(problems)


def test_memory_stat_fields_get_the_kernel_kind(world, passed):
    """memory.stat byte figures are GAUGE memory-*, its event counters DERIVE vmpage_action-*;
    which is which follows the kernel's own order in the file.  No field is unknown."""
    results, _, after, logs = passed
    for path, item in results.items():
        if after[path]["memory.stat"] is None:
            continue                 # no memory controller there (the bare cgroup)
        kinds = src.memory_stat_kinds(after[path]["memory.stat"])
        v = values(item)
        for field, kind in kinds.items():
            type_ = "memory" if kind == "bytes" else "vmpage_action"
            assert (type_, field) in v, "%s: memory.stat %s (%s) not emitted as %s" % (path, field, kind, type_)
    assert not [w for w in logs.warn if "unknown" in w]


# -- against the processes ----------------------------------------------------------------------------------


def worker_cpu(worker, path, after):
    """CPU seconds a holding worker and its children used since it entered its cgroup, by their own
    /proc/<pid>/stat; asserts they are all there is in the cgroup."""
    report = worker.result()
    pids = [report["pid"]] + report["kids"]
    procs = []
    for d in (after[path]["dir"],) + tuple(os.path.join(after[path]["dir"], c) for c in ("container",)):
        if os.path.exists(d + "/cgroup.procs"):
            with open(d + "/cgroup.procs") as f:
                procs += [int(p) for p in f.read().split()]
    assert sorted(procs) == sorted(pids), (path, procs, pids)
    ticks = sum(sum(src.proc_ticks(pid)) for pid in pids) - worker.baseline   # start-up before the move
    return ticks / float(CLK_TCK)


def test_cpu_against_the_processes_own_stat(world, passed):
    results, before, after, _ = passed
    for name, worker, path, burn in (("docker", world.docker_worker, world.docker.path, DOCKER_BURN),
                                     ("podman", world.podman_worker, world.podman.path, PODMAN_BURN)):
        procs = worker_cpu(worker, path, after)
        v = values(results[path])
        total = v[("cpu", "total")][0] / 100.0
        user_sys = (v[("cpu", "user")][0] + v[("cpu", "system")][0]) / 100.0
        print("%s: processes' own utime+stime since entering %.3f s; cpu-total %.2f s; cpu-user+system %.2f s"
              % (name, procs, total, user_sys))
        assert procs >= burn
        assert total == pytest.approx(procs, rel=0.05, abs=0.05)
        assert user_sys == pytest.approx(procs, rel=0.05, abs=0.05)
    v = values(results[world.docker.path])
    # half a core: the 1 s burn ran throttled
    assert v[("derive", "cpu_throttled_periods")][0] > 0
    assert v[("total_time_in_ms", "cpu_throttled")][0] > 0
    assert v[("derive", "cpu_periods")][0] >= v[("derive", "cpu_throttled_periods")][0]
    # the box: at least what its processes burnt inside it, by their own measure
    io_report = world.io_worker.result()
    box_floor = world.steady.cpu_used + (sum(io_report["at_end"]) - world.io_worker.baseline) / float(CLK_TCK)
    box_total = values(results[world.box.path])[("cpu", "total")][0] / 100.0
    print("box: cpu-total %.2f s >= %.2f s burnt by its workload and I/O worker" % (box_total, box_floor))
    assert box_total >= box_floor - 0.02


def test_a_cgroup_without_controllers(world, passed):
    """The bare cgroup's parent enables no controller: cpu.stat has the usage figures only, and the
    pressure files are there; the plugin emits exactly those, without a warning."""
    results, before, after, logs = passed
    s = after[world.bare.path]
    assert s["memory.current"] == s["pids.current"] == "absent" and s["io.stat"] is None
    assert sorted(s["cpu.stat"]) == ["system_usec", "usage_usec", "user_usec"]
    got = {(t, ti) for t, ti, _ in results[world.bare.path].samples}
    assert got == {("cpu", "user"), ("cpu", "system"), ("cpu", "total")} | {
        ("total_time_in_ms", "pressure_%s_%s" % (r, k)) for r in ("cpu", "memory", "io") for k in ("some", "full")}
    total = values(results[world.bare.path])[("cpu", "total")][0] / 100.0
    assert total >= world.plain.cpu_used - 0.02
    assert not logs.warn, logs.warn


def test_memory_against_the_processes_and_the_limits(world, passed):
    results, _, after, _ = passed
    box, docker = values(results[world.box.path]), values(results[world.docker.path])
    for name, v, path, touched in (("box", box, world.box.path, BOX_TOUCH_MIB), ("docker", docker,
                                                                              world.docker.path, 8)):
        rss_anon = sum(src.proc_status(pid, "RssAnon") for pid in after[path]["cgroup.procs"])
        print("%s: memory-anon %.1f MiB, processes' RssAnon %.1f MiB, memory-usage %.1f MiB"
              % (name, v[("memory", "anon")][0] / MiB, rss_anon / MiB, v[("memory", "usage")][0] / MiB))
        # what the workload touched after entering is charged here; memory charged before the move
        # (interpreter start-up) stays with the old cgroup on v2, so RssAnon is an upper bound
        assert v[("memory", "anon")][0] >= touched * MiB
        assert v[("memory", "anon")][0] <= rss_anon + MiB
        assert v[("memory", "working_set")][0] <= v[("memory", "usage")][0]
        assert v[("memory", "swap_usage")][0] == 0        # the guest has no swap
        assert ("memory", "swap_limit") not in v          # memory.swap.max is "max"
    assert box[("memory", "limit")][0] == BOX_LIMIT
    assert ("memory", "high") not in box
    assert docker[("memory", "high")][0] == DOCKER_HIGH
    assert ("memory", "limit") not in docker
    # the hog drove the box to its limit: the peak is the limit
    assert 0.9 * BOX_LIMIT <= box[("memory", "max_usage")][0] <= BOX_LIMIT


def test_the_oom_kill_is_counted(world, passed):
    results, _, after, _ = passed
    assert world.hog_status == -9, "the hog was not SIGKILLed by the OOM killer (status %s)" % world.hog_status
    box, docker = values(results[world.box.path]), values(results[world.docker.path])
    events = after[world.box.path]["memory.events"]
    with open(world.box_dir + "/memory.events.local") as f:
        local = src.flat(f.read())
    assert events["oom_kill"] == local["oom_kill"] == 1
    assert box[("derive", "memory_oom_kill")] == (1,)
    assert box[("derive", "memory_oom")][0] >= 1
    assert box[("derive", "memory_max")][0] >= 1
    assert docker[("derive", "memory_oom_kill")] == (0,)
    assert docker[("derive", "memory_oom")] == (0,)


def test_pids_against_the_tasks(world, passed):
    results, _, after, _ = passed
    for path, expected_limit, count in ((world.box.path, None, 3), (world.docker.path, DOCKER_PIDS_MAX, 3),
                                        (world.podman.path, None, 2)):
        v = values(results[path])
        # the podman scope's tasks are in its child: pids.current is hierarchical, cgroup.procs is not
        d = after[path]["dir"] + ("/container" if path == world.podman.path else "")
        procs = src.snapshot(d)["cgroup.procs"]
        threads = sum(src.proc_status(pid, "Threads") for pid in procs)
        assert v[("count", "pids")][0] == after[path]["pids.current"] == len(procs) == threads == count
        if expected_limit is None:
            assert ("count", "pids_limit") not in v
        else:
            assert v[("count", "pids_limit")] == (expected_limit,)
    assert after[world.podman.path]["cgroup.procs"] == []
    assert ("count", "pids") not in values(results[world.bare.path])


def test_pressure_lines(world, passed):
    results, before, after, _ = passed
    for path, item in results.items():
        v = values(item)
        got = sorted(ti for t, ti in v if t == "total_time_in_ms" and ti.startswith("pressure_"))
        assert got == sorted("pressure_%s_%s" % (r, k) for r in ("cpu", "memory", "io") for k in ("some", "full"))
    box = values(results[world.box.path])
    print("box pressure (ms): %s" % {ti: val[0] for (t, ti), val in box.items() if ti.startswith("pressure_")})
    # the hog's reclaim before the OOM kill stalled the box on memory
    assert box[("total_time_in_ms", "pressure_memory_some")][0] > 0


# -- block I/O ----------------------------------------------------------------------------------------------


def test_io_stat_counted_the_writes_on_the_scratch_disk(world, passed):
    """The kernel's io.stat (our own parser): O_DIRECT and buffered+fsync writes of the box are
    charged to the box, on the scratch disk's MAJ:MIN; the docker container did no I/O there."""
    _, _, after, _ = passed
    io_box = after[world.box.path]["io.stat"]
    print("box io.stat: %s; the worker: %s" % (io_box, world.io))
    assert world.disk_dev in io_box, (world.disk_dev, io_box)
    dev = io_box[world.disk_dev]
    assert world.io["direct_written"] == DIRECT_MIB * MiB
    assert dev["wbytes"] >= world.io["direct_written"] + world.io["buffered_written"]
    assert dev["rbytes"] >= world.io["direct_read"] == DIRECT_MIB * MiB
    assert dev["wios"] >= DIRECT_MIB and dev["rios"] >= 1
    io_docker = after[world.docker.path]["io.stat"] or {}
    assert io_docker.get(world.disk_dev, {}).get("wbytes", 0) == 0


def test_disk_identifiers_against_io_stat(world, passed):
    """THE PLACE where the plugin's block I/O identifiers meet io.stat: whatever disk_octets-*,
    disk_ops-* (and total_bytes/total_operations-discard-*) it emits must equal io.stat's figures
    for that device (rbytes/wbytes, rios/wios, dbytes/dios; "total" the sum over the devices),
    every device io.stat lists must have them, and the box's writes must show on the scratch disk.
    Vacuous only while the plugin emits no block I/O identifier at all."""
    results, before, after, _ = passed
    emitted, problems = 0, []
    for path, item in results.items():
        disk = {(t, ti): vals for t, ti, vals in item.samples if src.is_disk(t, ti)}
        emitted += len(disk)
        if not disk:
            continue
        problems += ["%s: %s" % (path, p) for p in src.disk_coverage(set(disk), after[path])]
        for (type_, type_instance), vals in sorted(disk.items()):
            try:
                lo = src.expected_value(type_, type_instance, before[path])
                hi = src.expected_value(type_, type_instance, after[path])
            except KeyError:
                problems.append("%s %s-%s = %r: no source in io.stat" % (path, type_, type_instance, vals))
                continue
            if not all(within(v, a, b) for v, a, b in zip(vals, lo, hi)):
                problems.append("%s %s-%s = %r, io.stat says %r .. %r" % (path, type_, type_instance, vals, lo, hi))
    print("block I/O identifiers emitted: %d" % emitted)
    assert not problems, "\n".join(problems)
    if emitted:
        box = values(results[world.box.path])
        octets = [vals for (t, ti), vals in box.items() if t == "disk_octets" and ti != "total"
                  and src.device_key(ti, after[world.box.path]["io.stat"]) == world.disk_dev]
        assert octets, "block I/O identifiers emitted, but none for the scratch disk %s" % world.disk_dev
        assert octets[0][1] >= world.io["direct_written"] + world.io["buffered_written"]
        assert octets[0][0] >= world.io["direct_read"]


# -- the command line ----------------------------------------------------------------------------------------


def test_cli_pid_json_on_v2(world):
    pid = world.docker_worker.result()["kids"][0]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["--json", "--pid", str(pid), "--runtimes", "docker",
                       "--docker-data-root", world.docker_root])
    assert rc == 0, err.getvalue()
    records = json.loads(out.getvalue())
    assert {r["plugin_instance"] for r in records} == {"docker-web"}
    assert {r["meta"]["cgroup"] for r in records} == {world.docker.path}
    pids = [r["values"][0] for r in records if (r["type"], r["type_instance"]) == ("count", "pids")]
    assert pids == [3]
    with open("/proc/%d/cgroup" % pid) as f:
        assert f.read() == "0::%s\n" % world.docker.path
