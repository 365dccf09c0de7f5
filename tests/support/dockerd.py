"""A dockerd of the test's own (RECIPES: no bridge, no iptables, the cgroupfs driver, vfs storage), with
its data root, exec root and socket under a directory of the test, and a busybox image imported into it
(``ccg-busybox:test``): ``with own_dockerd(top, rootfs) as d: d.docker("run", ...)``.  Stopped by PID
(SIGTERM, then SIGKILL) and its mounts and directory removed on the way out, also on failure."""

import contextlib
import os
import shutil
import signal
import subprocess

from tests.support import collectd_harness as harness

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
IMAGE = "ccg-busybox:test"


class Dockerd(object):
    def __init__(self, top):
        self.top = top
        self.data, self.execroot = top + "/data", top + "/exec"
        self.sock, self.pidfile = top + "/docker.sock", top + "/docker.pid"

    def docker(self, *args, **kw):
        """``docker ARGS`` against this daemon: the CompletedProcess (stdout and stderr together)."""
        return subprocess.run([DOCKER, "-H", "unix://" + self.sock] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=120, **kw)


@contextlib.contextmanager
def own_dockerd(top, rootfs):
    """A running :class:`Dockerd` under ``top`` (made here) with ``rootfs`` imported as :data:`IMAGE`."""
    os.makedirs(top)
    d = Dockerd(top)
    log = open(top + "/dockerd.log", "w")
    daemon = subprocess.Popen([DOCKERD, "--data-root", d.data, "--exec-root", d.execroot, "-H", "unix://" + d.sock,
                               "--pidfile", d.pidfile, "--storage-driver=vfs", "--iptables=false",
                               "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                               "--exec-opt", "native.cgroupdriver=cgroupfs"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        harness.wait_until(lambda: d.docker("version").returncode == 0, 60, what="dockerd")
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imp = d.docker("import", "-", IMAGE, stdin=tar.stdout)
        tar.wait()
        assert imp.returncode == 0, imp.stdout
        yield d
    finally:
        try:
            os.kill(daemon.pid, signal.SIGTERM)
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        log.close()
        subprocess.run(["umount", "-R", d.execroot], stderr=subprocess.DEVNULL)
        shutil.rmtree(top, ignore_errors=True)
