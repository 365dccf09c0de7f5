"""Final figures on exit (issue 6) under a real collectd: CollectOnExit with synthetic containers and runc.

Values are read back through a small Python write callback loaded into the same collectd (the stock
writers drop meta data): every value list of plugin ``container`` goes to a JSON-lines file with its meta.
The read interval is 60 s, so any final figure seen comes from the sentinel watcher, not from a read pass.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from ccg_lab.synthetic import CgroupTree, activate_blk_throttle, read_hierarchies
from collectd_cgroups import sentinel
from tests.support import collectd_harness as harness
from tests.support.dockerd import IMAGE, own_dockerd
from tests.support.kernelutil import proc_alive as alive     # test_exit_runtimes.py imports it from here too

CHECKOUT = harness.CHECKOUT

_WRITER = textwrap.dedent("""
    import json
    import collectd
    PATH = %r
    def write(vl, data=None):
        if vl.plugin != "container":
            return
        with open(PATH, "a") as f:
            f.write(json.dumps({"instance": vl.plugin_instance, "type": vl.type, "type_instance": vl.type_instance,
                                "values": list(vl.values), "meta": dict(vl.meta or {})}) + "\\n")
    collectd.register_write(write)
""")


def start_collectd(workdir, match, extra=(), base=("CollectOnExit true", "Interval 60")):
    """collectd with the JSON-lines writer and ``base`` (by default CollectOnExit and a 60 s interval:
    only final figures matter); returns (Collectd, path)."""
    out = os.path.join(str(workdir), "values.jsonl")
    mod = os.path.join(str(workdir), "writer")
    os.makedirs(mod, exist_ok=True)
    with open(os.path.join(mod, "ccg_final_writer.py"), "w") as f:
        f.write(_WRITER % out)
    drop = harness.dropin_text().replace(
        'Import "collectd_cgroups.plugin"',
        'ModulePath "%s"\n  Import "ccg_final_writer"\n  Import "collectd_cgroups.plugin"' % mod, 1)
    # Only this test's containers: other containers on the machine must not get sentinels from it.
    prefix = match.lstrip("^/").split("/")[0]
    cd = harness.Collectd(workdir, modules=[['Match "%s"' % match, 'Ignore "^/(?!%s/)"' % prefix,
                                             ] + list(base) + list(extra)], dropin=drop)
    return cd, out


# collectd's write threads store a final's values in any order: wait for every one asserted on.
_FINAL_KEYS = (("cpu", "total"), ("duration", "final_cpu"), ("bytes", "final_disk_write"),
               ("bytes", "final_net_tx"), ("bytes", "final_net_rx"), ("memory", "max_usage"))


def _wait_all_finals(out, instance, timeout=30):
    return harness.wait_until(
        lambda: (lambda f: f if all(k in f for k in _FINAL_KEYS) else None)(finals_of(out, instance)),
        timeout, what="final values %s of %s" % (list(_FINAL_KEYS), instance))


def finals_of(path, instance):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row["instance"] == instance and row["meta"].get("final") is True:
                    rows.append(row)
    except FileNotFoundError:
        pass
    return {(r["type"], r["type_instance"]): r["values"] for r in rows}


FINAL_KEYS = (("duration", "final_cpu"), ("cpu", "total"), ("memory", "max_usage"))


def _complete(final):
    """``final`` once every value the test reads has arrived (and a final_disk_write, when written,
    is not zero)."""
    if all(k in final for k in FINAL_KEYS) and final.get(("bytes", "final_disk_write"), True):
        return final
    return None


def sentinels_in(directory):
    with open(directory + "/cgroup.procs") as f:
        pids = [int(x) for x in f.read().split()]
    return [p for p in pids if sentinel.is_sentinel(p)]


@pytest.fixture
def tree():
    with CgroupTree("ccg-test-exite-%s" % secrets.token_hex(4)) as t:
        yield t


def test_collectd_dispatches_final_figures(tree, tmp_path):
    c = tree.container("job")
    p = c.spawn(cpu_seconds=0.5, memory_mib=40).wait_ready()
    cd, out = start_collectd(tmp_path, "^/%s/(?P<name>[^/]+)$" % tree.prefix)
    with cd:
        memdir = c.dirs["memory"]
        pids = harness.wait_until(lambda: sentinels_in(memdir), 20, what="a sentinel in the container")
        assert len(pids) == 1
        assert os.readlink("/proc/%d/exe" % pids[0]).endswith("sleep")
        p.kill()
        # collectd's write threads store the final values in any order: wait for every one asserted below.
        final = harness.wait_until(lambda: _complete(finals_of(out, "cgroup-job")), 20, what="final values")
        harness.wait_until(lambda: not any(os.path.exists(d) for d in c.dirs.values()), 10,
                           what="the container's cgroups to be removed")
        assert not alive(pids[0])
        assert cd.read_failures() == []
        cli = subprocess.run([sys.executable, "-m", "collectd_cgroups", "--exited", "--json"], cwd=CHECKOUT,
                             stdout=subprocess.PIPE, check=True)
    assert final[("duration", "final_cpu")][0] >= p.cpu_used - 0.01
    assert final[("cpu", "total")][0] / 100.0 == pytest.approx(final[("duration", "final_cpu")][0])
    assert final[("memory", "max_usage")][0] >= 40 << 20
    exited = [f for f in json.loads(cli.stdout) if f["id"] == c.path]
    assert exited and exited[-1]["totals"]["final_cpu"] == final[("duration", "final_cpu")][0]
    assert exited[-1]["removed"] is True
    c.removed = True


def test_collectd_shutdown_releases_sentinels(tree, tmp_path):
    c = tree.container("stays")
    p = c.spawn().wait_ready()
    cd, out = start_collectd(tmp_path, "^/%s/(?P<name>[^/]+)$" % tree.prefix)
    with cd:
        pids = harness.wait_until(lambda: sentinels_in(c.dirs["memory"]), 20, what="a sentinel")
    assert cd.proc.returncode == 0
    assert not alive(pids[0])
    assert c.pids() == [p.pid]
    c.remove()


def test_collectd_sigkill_leaves_no_sentinel(tree, tmp_path):
    """collectd killed with SIGKILL: its sentinels exit by themselves (PR_SET_PDEATHSIG) and the
    container's cgroups stay removable."""
    c = tree.container("victim")
    p = c.spawn().wait_ready()
    cd, out = start_collectd(tmp_path, "^/%s/(?P<name>[^/]+)$" % tree.prefix)
    with cd:
        pids = harness.wait_until(lambda: sentinels_in(c.dirs["memory"]), 20, what="a sentinel")
        os.kill(cd.pid, signal.SIGKILL)
        cd.proc.wait(10)
        harness.wait_until(lambda: not alive(pids[0]), 10, what="the sentinel to exit")
    assert c.pids() == [p.pid]
    c.remove()      # raises if anything is left in the cgroups


# -- runc -------------------------------------------------------------------------------------------------

RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"

# Burns CPU in the shell, writes 16 MiB with O_DIRECT, moves 200000 bytes over its own lo, prints the
# shell's own CPU ticks (utime + stime from /proc/self/stat), then lives on a moment so the plugin sees it.
_SCRIPT = r"""
i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done
dd if=/dev/zero of=/data.bin bs=1M count=16 oflag=direct 2>/dev/null
ip link set lo up
nc -l -p 9999 -e dd if=/dev/zero bs=1000 count=200 2>/dev/null &
sleep 0.3
nc 127.0.0.1 9999 >/dev/null
read pid comm state ppid pgrp sess tty tpgid flags minflt cminflt majflt cmajflt utime stime rest < /proc/$$/stat
echo "TICKS $((utime + stime))"
sleep 3
"""


def _runc_bundle(root, cgroups_path):
    rootfs = os.path.join(root, "rootfs")
    for d in ("bin", "proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    for applet in ("sh", "dd", "ip", "nc", "sleep", "cat"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    subprocess.run([RUNC, "spec", "--bundle", root], check=True)
    with open(os.path.join(root, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/sh", "-c", _SCRIPT]
    for kind in ("bounding", "effective", "permitted"):
        spec["process"]["capabilities"][kind].append("CAP_NET_ADMIN")
    spec["root"]["readonly"] = False
    spec["linux"]["cgroupsPath"] = cgroups_path
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(spec, f)


def test_runc_container_gets_final_figures(tmp_path):
    prefix = "ccg-test-runc-%s" % secrets.token_hex(4)
    name = "job"
    cid = "ccg-%s" % secrets.token_hex(4)
    bundle, state = str(tmp_path / "bundle"), str(tmp_path / "runc-state")
    _runc_bundle(bundle, "/%s/%s" % (prefix, name))
    blkio_prefix = "/sys/fs/cgroup/blkio/" + prefix
    # Every hierarchy: runc makes the prefix in all of them (cpuset, devices, freezer...); the tree removes it.
    with CgroupTree(prefix, controllers=tuple(k for k in read_hierarchies() if k != "unified")) as tree:
        tree._setup()       # the prefix directories, removed by the tree at the end
        # Activate blk-throttle on the disk so that blkio.throttle.* counts (see RECIPES.md).
        activate_blk_throttle(blkio_prefix, bundle)
        cd, out = start_collectd(tmp_path / "cd", "^/%s/(?P<name>[^/]+)$" % prefix, ['Interface "lo"'])
        stdout = open(str(tmp_path / "container.out"), "w+")
        try:
            with cd:
                subprocess.run([RUNC, "--root", state, "run", "-d", "--bundle", bundle, cid], check=True,
                               stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
                dirs = ["/sys/fs/cgroup/%s/%s/%s" % (h, prefix, name) for h in ("cpu", "memory", "blkio", "pids")]
                harness.wait_until(lambda: sentinels_in(dirs[1]), 20, what="a sentinel in the runc container")
                final = _wait_all_finals(out, "cgroup-" + name)
                harness.wait_until(lambda: not any(os.path.exists(d) for d in dirs), 10,
                                   what="the container's cgroups to be removed")
                delete = subprocess.run([RUNC, "--root", state, "delete", cid], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, timeout=60)
                assert delete.returncode == 0, delete.stdout
            stdout.seek(0)
            text = stdout.read()
        finally:
            subprocess.run([RUNC, "--root", state, "delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            stdout.close()
        ticks = int(text.split("TICKS ")[1].split()[0])
        assert final[("duration", "final_cpu")][0] >= ticks / 100.0 - 0.01
        assert final[("bytes", "final_disk_write")][0] >= 16 << 20
        assert final[("bytes", "final_net_tx")][0] >= 200000
        assert final[("bytes", "final_net_rx")][0] >= 200000
        assert final[("memory", "max_usage")][0] > 0
        assert cd.read_failures() == []


# -- Docker -----------------------------------------------------------------------------------------------

def test_docker_container_gets_final_figures(tmp_path):
    """dockerd of the test's own (tests/support/dockerd.py); the container goes under a cgroup parent of
    the test (``/<prefix>/docker/<id>``, Docker's layout), with --network none; after its final figures
    ``docker rm`` succeeds and its cgroups are gone.  Its values carry its image and the compose labels
    MetaLabel names (SendMeta), as ``docker inspect`` reports them."""
    prefix = "ccg-test-docker-%s" % secrets.token_hex(4)
    rootfs = str(tmp_path / "bundle" / "rootfs")
    _runc_bundle(str(tmp_path / "bundle"), "/unused")       # only its busybox rootfs
    with own_dockerd(str(tmp_path / "d"), rootfs) as d:
        docker = d.docker
        try:
            with CgroupTree(prefix, controllers=tuple(k for k in read_hierarchies() if k != "unified")) as tree:
                tree._setup()
                activate_blk_throttle("/sys/fs/cgroup/blkio/" + prefix, rootfs)
                cd, out = start_collectd(tmp_path / "cd", "^/%s/nomatch$" % prefix,
                                         ['Interface "lo"', 'DockerDataRoot "%s"' % d.data, "SendMeta true",
                                          'MetaLabel "com.docker.compose.project" "com.docker.compose.service"'])
                with cd:
                    run = docker("run", "-d", "--network", "none", "--cap-add", "NET_ADMIN", "--name", "job",
                                 "--label", "com.docker.compose.project=shop",
                                 "--label", "com.docker.compose.service=web",
                                 "--cgroup-parent", "/%s/docker" % prefix, IMAGE, "/bin/sh", "-c", _SCRIPT)
                    assert run.returncode == 0, run.stdout
                    cid = run.stdout.decode().split()[-1]
                    dirs = ["/sys/fs/cgroup/%s/%s/docker/%s" % (h, prefix, cid)
                            for h in ("cpu", "memory", "blkio", "pids")]
                    harness.wait_until(lambda: sentinels_in(dirs[1]), 20, what="a sentinel in the docker container")
                    final = _wait_all_finals(out, "docker-job")
                    harness.wait_until(lambda: not any(os.path.exists(p) for p in dirs), 10,
                                       what="the container's cgroups to be removed")
                    text = docker("logs", "job").stdout.decode()
                    inspect = json.loads(docker("inspect", "job").stdout)[0]
                    rm = docker("rm", "job")
                    assert rm.returncode == 0, rm.stdout
                    assert cd.read_failures() == []
        finally:
            docker("rm", "-f", "job")
    ticks = int(text.split("TICKS ")[1].split()[0])
    assert final[("duration", "final_cpu")][0] >= ticks / 100.0 - 0.01
    with open(out) as f:
        metas = [json.loads(line)["meta"] for line in f if '"docker-job"' in line]
    labels = inspect["Config"]["Labels"]
    assert metas and all(m["image"] == inspect["Config"]["Image"] == IMAGE for m in metas)
    assert all(m["com.docker.compose.project"] == labels["com.docker.compose.project"] == "shop" and
               m["com.docker.compose.service"] == labels["com.docker.compose.service"] == "web" and
               m["container_id"] == cid and m["runtime"] == "docker" for m in metas)
    assert final[("bytes", "final_disk_write")][0] >= 16 << 20
    assert final[("bytes", "final_net_tx")][0] >= 200000
    assert final[("bytes", "final_net_rx")][0] >= 200000
