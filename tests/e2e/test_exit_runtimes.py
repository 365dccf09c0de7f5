"""Final figures on exit (issue 6) with the remaining real runtimes: podman, LXC, crun.

Same method as tests/e2e/test_exit_e2e.py (whose helpers this file imports): a real collectd with
``CollectOnExit true``, a 60 s read interval (so every final figure comes from the sentinel watcher) and a
JSON-lines writer that keeps the meta data.  The containers run the same script as the runc and Docker
tests: burn CPU in the shell, write 16 MiB with O_DIRECT, move 200000 bytes over their own ``lo``, print the
shell's own CPU ticks.  The figures are compared with what the container itself did.

Every runtime runs with the settings of RECIPES.md: cgroups only under a prefix of the test's own (absolute
paths from each hierarchy's root), no bridge (podman ``--network none``, LXC ``lxc.net.0.type = empty``),
private configuration and storage under the test's temporary directory; everything stopped and removed
in teardown.
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest

from ccg_lab.synthetic import CgroupTree, activate_blk_throttle, check_path, read_hierarchies
from tests.support import collectd_harness as harness
from tests.support.kernelutil import umount_under
from tests.e2e.test_exit_e2e import _SCRIPT, _runc_bundle, alive, finals_of, sentinels_in, start_collectd

PODMAN = shutil.which("podman") or "/usr/bin/podman"
CRUN = shutil.which("crun") or "/usr/bin/crun"
LXC_BIN = "/usr/bin"

CONTROLLERS = ("cpu", "memory", "blkio", "pids")   # where the test looks for the container's cgroups


def _all_v1():
    """Every v1 hierarchy of this machine (runtimes create their cgroups in all of them)."""
    return tuple(k for k in read_hierarchies() if k != "unified")


def _throttle_on(prefix, path):
    """Activate blk-throttle on the disk holding ``path`` so that blkio.throttle.* counts (RECIPES.md)."""
    activate_blk_throttle("/sys/fs/cgroup/blkio/" + prefix, path)


# What the runtime tests assert on; collectd's write threads may store a final's values in any order.
FIGURES = (("cpu", "total"), ("duration", "final_cpu"), ("bytes", "final_disk_write"), ("bytes", "final_net_tx"),
           ("bytes", "final_net_rx"), ("memory", "max_usage"))


def wait_final(out, instance, keys=FIGURES, timeout=30):
    """The final values of ``instance`` once every one of ``keys`` has been written."""
    return harness.wait_until(lambda: (lambda f: f if all(k in f for k in keys) else None)(finals_of(out, instance)),
                              timeout, what="final values %s of %s" % (list(keys), instance))


def _ticks(text):
    return int(text.split("TICKS ")[1].split()[0])


def _assert_figures(final, text):
    """The final figures are at least what the container did (its own count of CPU ticks, 16 MiB written
    with O_DIRECT, 200000 bytes each way over lo)."""
    assert final[("duration", "final_cpu")][0] >= _ticks(text) / 100.0 - 0.01
    assert final[("cpu", "total")][0] / 100.0 == pytest.approx(final[("duration", "final_cpu")][0])
    assert final[("bytes", "final_disk_write")][0] >= 16 << 20
    assert final[("bytes", "final_net_tx")][0] >= 200000
    assert final[("bytes", "final_net_rx")][0] >= 200000
    assert final[("memory", "max_usage")][0] > 0


# -- podman -----------------------------------------------------------------------------------------------


class Podman(object):
    """podman with a private containers.conf and storage under ``top``: runtime runc, cgroupfs manager,
    vfs driver, no network by default (no bridge, no firewall change)."""

    def __init__(self, top):
        self.top = top
        self.root, self.run = top + "/root", top + "/run"
        conf, storage, registries = top + "/containers.conf", top + "/storage.conf", top + "/registries.conf"
        os.makedirs(top + "/tmp")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                    'netns = "none"\nlog_driver = "k8s-file"\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                    'events_logfile_path = "{t}/events.log"\ntmp_dir = "{t}/tmp"\n'
                    'static_dir = "{t}/root/libpod"\nvolume_path = "{t}/root/volumes"\n'
                    '[network]\nnetwork_config_dir = "{t}/net"\ndefault_subnet = "198.51.100.0/24"\n'
                    .format(t=top))
        with open(storage, "w") as f:
            f.write('[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n' % (self.run, self.root))
        with open(registries, "w") as f:
            f.write("")
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage,
                        CONTAINERS_REGISTRIES_CONF=registries)

    def __call__(self, *args, **kw):
        return subprocess.run([PODMAN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=120, env=self.env, **kw)

    def import_rootfs(self, rootfs, name):
        """``podman import`` in a private mount namespace with a tmpfs on /var/lib: the import writes its
        blob-info cache to /var/lib/containers/cache whatever the configuration says."""
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                              'mount -t tmpfs -o size=16m ccg-test /var/lib && exec "$0" import - "$1"',
                              PODMAN, name], stdin=tar.stdout, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=120, env=self.env)
        tar.stdout.close()
        tar.wait()
        assert res.returncode == 0, res.stdout


def test_podman_container_gets_final_figures(tmp_path):
    """podman (runc, cgroupfs, vfs, ``--network none``), the container under ``--cgroup-parent /<prefix>``
    (``/<prefix>/libpod-<id>``, podman's layout): final figures at least what it did, named from
    containers.json (``podman-job``); afterwards its cgroups are gone and ``podman rm`` succeeds."""
    prefix = "ccg-test-podman-%s" % secrets.token_hex(4)
    # A short path: with pytest's long tmp_path conmon's exit command (podman container cleanup) never runs
    # and the container stays "stopped" (socket paths are limited to 108 bytes).
    top = tempfile.mkdtemp(prefix="ccg-podman-", dir="/tmp")
    pm = Podman(top)
    rootfs = str(tmp_path / "bundle" / "rootfs")
    _runc_bundle(str(tmp_path / "bundle"), "/unused")       # only its busybox rootfs
    conmon = None
    try:
        pm.import_rootfs(rootfs, "ccg-busybox:test")
        with CgroupTree(prefix, controllers=_all_v1()) as tree:
            tree._setup()
            _throttle_on(prefix, top)
            cd, out = start_collectd(tmp_path / "cd", "^/%s/nomatch$" % prefix,
                                     ['Interface "lo"', 'ContainersStorage "%s"' % pm.root])
            with cd:
                run = pm("run", "-d", "--network", "none", "--cap-add", "NET_ADMIN", "--name", "job",
                         "--cgroup-parent", "/" + prefix, "ccg-busybox:test", "/bin/sh", "-c", _SCRIPT)
                assert run.returncode == 0, run.stdout
                cid = run.stdout.decode().split()[-1]
                assert len(cid) == 64, run.stdout
                pid = pm("inspect", "--format", "{{.State.ConmonPid}}", "job").stdout.decode().strip()
                conmon = int(pid) if pid.isdigit() and int(pid) > 0 else None
                dirs = ["/sys/fs/cgroup/%s/%s/libpod-%s" % (h, prefix, cid) for h in CONTROLLERS]
                spids = harness.wait_until(lambda: sentinels_in(dirs[1]), 20,
                                           what="a sentinel in the podman container")
                final = wait_final(out, "podman-job")
                harness.wait_until(lambda: not any(os.path.exists(d) for d in dirs), 10,
                                   what="the container's cgroups to be removed")
                assert not alive(spids[0])
                # "stopped" until podman's own cleanup (conmon's exit command: runc delete...) has run.
                state = lambda: pm("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                                   "job").stdout.decode().split()
                harness.wait_until(lambda: state()[0] == "exited", 30, what="podman's cleanup of the container")
                assert state() == ["exited", "0"]
                text = pm("logs", "job").stdout.decode()
                rm = pm("rm", "job")
                assert rm.returncode == 0, rm.stdout
                assert pm("ps", "-a", "-q").stdout.strip() == b""
                assert cd.read_failures() == []
            # Nothing of the container is left in any hierarchy (podman's own conmon cgroup stays: podman's).
            left = [d for d in tree.existing_dirs() for e in os.listdir(d) if e.startswith("libpod-")]
            assert left == []
        _assert_figures(final, text)
    finally:
        pm("rm", "-f", "job")
        if conmon is not None:
            harness.wait_until(lambda: not alive(conmon), 30, what="conmon to exit")
        pm("rmi", "-a", "-f")
        umount_under(top)
        shutil.rmtree(top, ignore_errors=True)


# -- LXC --------------------------------------------------------------------------------------------------


class Lxc(object):
    """LXC containers under ``lxcpath``, every lxc-* command in one network namespace of the test's (LXC's
    control socket is per network namespace).  ``lxc.cgroup.relative = 1`` and lxc-start started from
    the test's prefix cgroups (in every hierarchy): the container gets ``/<prefix>/lxc.payload.<name>``, the
    monitor ``/<prefix>/lxc.monitor.<name>``, nothing at the hierarchies' roots and nothing near the
    machine's own cgroup."""

    def __init__(self, lxcpath, netns, prefix):
        self.lxcpath = lxcpath
        self.netns = netns
        self.prefix = prefix
        os.makedirs(lxcpath)

    def __call__(self, tool, *args, start_in_prefix=False, timeout=60):
        preexec = self._enter_prefix if start_in_prefix else None
        return subprocess.run(["nsenter", "--net=/run/netns/" + self.netns, LXC_BIN + "/" + tool,
                               "-P", self.lxcpath] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
                              preexec_fn=preexec)

    def _enter_prefix(self):
        # In the child, before exec: join /<prefix> in every hierarchy (absolute paths; checked).
        pid = str(os.getpid()).encode()
        for mount in read_hierarchies().values():
            fd = os.open(check_path("%s/%s/cgroup.procs" % (mount, self.prefix)), os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        with open("/proc/self/cgroup") as f:
            if "process_api" in f.read():
                os._exit(97)

    def create(self, name, conf_path):
        with open(conf_path, "w") as f:
            f.write("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\nlxc.cgroup.relative = 1\n"
                    "lxc.tty.max = 0\n")
        res = self("lxc-create", "-n", name, "-t", "busybox", "-f", conf_path)
        assert res.returncode == 0, res.stdout
        return os.path.join(self.lxcpath, name, "rootfs")

    def start(self, name, script):
        res = self("lxc-start", "-n", name, "-d", "-l", "INFO", "-o", self.lxcpath + "/" + name + ".log",
                   "--", "/bin/sh", "-c", script, start_in_prefix=True)
        assert res.returncode == 0, res.stdout + self.log(name)
        return res

    def log(self, name):
        try:
            with open(self.lxcpath + "/" + name + ".log", "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def state(self, name):
        return self("lxc-info", "-n", name, "-s", "-H").stdout.decode().strip()

    def init_pid(self, name):
        out = self("lxc-info", "-n", name, "-p", "-H").stdout.decode().strip()
        return int(out) if out.isdigit() else None


def test_lxc_container_gets_final_figures_and_starts_again_in_the_same_cgroup(tmp_path):
    """LXC 5 (``lxc-create -t busybox``, ``lxc.net.0.type = empty``): final figures at least what the
    container did, under ``lxc-job``; afterwards ``lxc.payload.job`` is gone from every hierarchy, and the
    next ``lxc-start`` of the same name uses ``lxc.payload.job`` again (no ``-1`` suffix); that second run,
    stopped with ``lxc-stop -k``, gets its final figures and its cgroups removed too; ``lxc-destroy``
    succeeds."""
    prefix = "ccg-test-lxc-%s" % secrets.token_hex(4)
    netns = prefix
    lxcpath = str(tmp_path / "lxc")
    subprocess.run(["ip", "netns", "add", netns], check=True)
    lxc = Lxc(lxcpath, netns, prefix)
    created = False
    try:
        with CgroupTree(prefix, controllers=_all_v1()) as tree:
            tree._setup()
            rootfs = lxc.create("job", str(tmp_path / "lxc.conf"))
            created = True
            _throttle_on(prefix, rootfs)
            cd, out = start_collectd(tmp_path / "cd", "^/%s/nomatch$" % prefix, ['Interface "lo"'])
            payload = lambda h, suffix="": "%s/%s/lxc.payload.job%s" % (read_hierarchies()[h], prefix, suffix)
            every = list(read_hierarchies())
            with cd:
                lxc.start("job", "exec >/out.txt 2>&1\n" + _SCRIPT)
                dirs = [payload(h) for h in CONTROLLERS]
                spids = harness.wait_until(lambda: sentinels_in(dirs[1]), 20, what="a sentinel in the LXC container")
                final = wait_final(out, "lxc-job")
                harness.wait_until(lambda: not any(os.path.exists(payload(h)) for h in every), 10,
                                   what="lxc.payload.job to be removed from every hierarchy")
                assert not alive(spids[0])
                harness.wait_until(lambda: lxc.state("job") == "STOPPED", 30, what="the container to stop")
                with open(os.path.join(rootfs, "out.txt")) as f:
                    text = f.read()

                # Second start, same name: the same cgroup name, no "-1".
                os.unlink(os.path.join(rootfs, "data.bin"))
                with open(out, "w"):
                    pass        # forget the first run's values
                lxc.start("job", "sleep 600")
                pid = harness.wait_until(lambda: lxc.init_pid("job"), 20, what="the second run's init")
                with open("/proc/%d/cgroup" % pid) as f:
                    memory = [line.split(":", 2)[2].strip() for line in f if line.split(":")[1] == "memory"]
                assert memory == ["/%s/lxc.payload.job" % prefix]
                assert not any(os.path.exists(payload(h, "-1")) for h in every)
                harness.wait_until(lambda: sentinels_in(dirs[1]), 20, what="a sentinel in the second run")
                stop = lxc("lxc-stop", "-n", "job", "-k")
                assert stop.returncode == 0, stop.stdout
                again = wait_final(out, "lxc-job", [("duration", "final_cpu"), ("memory", "max_usage")])
                harness.wait_until(lambda: not any(os.path.exists(payload(h)) for h in every), 10,
                                   what="lxc.payload.job to be removed again")
                assert again[("duration", "final_cpu")][0] >= 0 and again[("memory", "max_usage")][0] > 0
                destroy = lxc("lxc-destroy", "-n", "job")
                assert destroy.returncode == 0, destroy.stdout
                created = False
                assert cd.read_failures() == []
            # Only the monitor's leftovers may remain under the prefix (lxc.pivot, LXC's own), no payload.
            left = [e for d in tree.existing_dirs() for e in os.listdir(d) if e.startswith("lxc.payload")]
            assert left == []
        _assert_figures(final, text)
    finally:
        if created:
            lxc("lxc-stop", "-n", "job", "-k")
            lxc("lxc-destroy", "-n", "job", "-f")
        subprocess.run(["ip", "netns", "delete", netns], stderr=subprocess.DEVNULL)


# -- crun -------------------------------------------------------------------------------------------------

# The container shares the host's PID namespace and leaves a child behind when its first process exits.
# ``crun delete`` (what podman's cleanup runs after an exit) then kills every process left in the cgroups
# in one go, the child and the sentinel, so the watcher never sees the sentinel alone.  (With a PID
# namespace of its own the container's processes all die with its first one and a foreground ``crun run``
# deletes it at once: the sentinel is then alone for the 0.3-1 ms until crun kills it, and a watcher round
# falling into that window, about one in a thousand, takes final figures.)
_CRUN_SCRIPT = r"""
i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done
sleep 300 &
sleep 3
"""


def _crun(*args, stdout=subprocess.PIPE):
    """crun in a private mount namespace without the cgroup2 mount: it refuses the hybrid layout."""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           'umount /sys/fs/cgroup/unified && exec "$@"', "sh", CRUN] + list(args),
                          stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)


def test_crun_kills_the_sentinel_logged_once_no_final_nothing_breaks(tmp_path):
    """crun (1.8, in a private mount namespace with the cgroup2 mount unmounted, where it sees plain v1)
    kills every process left in the container's cgroups when it deletes the container: the sentinel too.
    The plugin logs that once, dispatches no final figures for the container, collectd keeps running (no
    read failure), ``crun delete`` exits 0 and the cgroups are gone; the next container that exits still
    gets its final figures."""
    prefix = "ccg-test-crun-%s" % secrets.token_hex(4)
    bundle, state = str(tmp_path / "bundle"), str(tmp_path / "crun-state")
    _runc_bundle(bundle, "/%s/job" % prefix)
    with open(bundle + "/config.json") as f:
        spec = json.load(f)
    spec["process"]["args"] = ["/bin/sh", "-c", _CRUN_SCRIPT]
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"]
    with open(bundle + "/config.json", "w") as f:
        json.dump(spec, f)
    cid = "ccg-%s" % secrets.token_hex(4)
    status = lambda: json.loads(_crun("--root", state, "state", cid).stdout or b"{}").get("status")
    with CgroupTree(prefix, controllers=_all_v1()) as tree:
        tree._setup()
        cd, out = start_collectd(tmp_path / "cd", "^/%s/(?P<name>[^/]+)$" % prefix)
        try:
            with cd:
                with open(str(tmp_path / "crun.out"), "w+") as log:     # the container inherits it
                    run = _crun("--root", state, "run", "-d", "--bundle", bundle, cid, stdout=log)
                    log.seek(0)
                    assert run.returncode == 0, log.read()
                dirs = ["/sys/fs/cgroup/%s/%s/job" % (h, prefix) for h in CONTROLLERS]
                spids = harness.wait_until(lambda: sentinels_in(dirs[1]), 20, what="a sentinel in the crun container")
                harness.wait_until(lambda: status() == "stopped", 30, what="the container's first process to exit")
                with open(dirs[1] + "/cgroup.procs") as f:
                    left = [int(p) for p in f.read().split() if int(p) not in spids]
                with open("/proc/%d/cmdline" % left[0]) as f:
                    assert len(left) == 1 and f.read().split("\0")[:2] == ["sleep", "300"]
                assert alive(spids[0])
                delete = _crun("--root", state, "delete", cid)
                assert delete.returncode == 0, delete.stdout
                assert not alive(left[0])
                harness.wait_until(lambda: not alive(spids[0]), 10, what="crun to kill the sentinel")
                assert not any(os.path.exists(d) for d in dirs)     # crun removed them itself
                needle = "/%s/job: its sentinel was killed" % prefix
                harness.wait_until(lambda: needle in cd.log(), 10, what="the plugin to log the lost sentinel")
                time.sleep(2.0)     # four more watcher rounds: still logged once
                assert cd.log().count(needle) == 1, cd.log()
                assert finals_of(out, "cgroup-job") == {}

                # The watcher still works: the next container that exits gets its figures.
                c = tree.container("after")
                p = c.spawn(cpu_seconds=0.2).wait_ready()
                harness.wait_until(lambda: sentinels_in(c.dirs["memory"]), 20, what="a sentinel in 'after'")
                p.kill()
                after = wait_final(out, "cgroup-after", [("duration", "final_cpu")])
                assert after[("duration", "final_cpu")][0] >= p.cpu_used - 0.01
                harness.wait_until(lambda: not any(os.path.exists(c.dirs[h]) for h in CONTROLLERS), 10,
                                   what="the cgroups of 'after' to be removed")
                assert cd.alive()
                assert cd.read_failures() == []
                assert "unexpected error" not in cd.log()
        finally:
            _crun("--root", state, "delete", "--force", cid)
