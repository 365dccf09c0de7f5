"""runtimes/podman.py against a real podman (Debian 12: 4.3.1): what it reads from the on-disk state is
what ``podman inspect`` / ``podman pod inspect`` (the independent source) report.

podman runs as in RECIPES.md: a private containers.conf and storage.conf (graph root, run root, tmp dir,
events log all under a temporary directory of this module's), runtime runc, cgroupfs manager, vfs
driver, ``--network none``, every cgroup under ``--cgroup-parent /<prefix>`` (a prefix of this module's, in
every hierarchy, removed with all below it in teardown).  The image is ``podman import``ed from a
busybox-static rootfs; pods get it as infra image, with a ``/pause`` script as infra command (Debian's
podman would otherwise build its pause image from catatonit, not installed).  ``podman kube play`` is not
run: it has no ``--cgroup-parent`` and would create ``/libpod_parent`` at the hierarchies' roots.
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest

from ccg_lab.synthetic import CgroupTree, read_hierarchies
from collectd_cgroups.root import HostRoot
from collectd_cgroups.runtimes import podman, resolver
from tests.support import collectd_harness as harness
from tests.support.kernelutil import umount_under

PODMAN = shutil.which("podman") or "/usr/bin/podman"
BUSYBOX = "/bin/busybox"
IMAGE = "localhost/ccg-busybox:podstate"
PAUSE = '#!/bin/sh\ntrap "exit 0" TERM\nwhile :; do sleep 1; done\n'


class Podman(object):
    """podman with private configuration and storage under ``top``."""

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
        open(registries, "w").close()
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage,
                        CONTAINERS_REGISTRIES_CONF=registries, TMPDIR=top + "/tmp")

    def __call__(self, *args):
        return subprocess.run([PODMAN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=120, env=self.env, stdin=subprocess.DEVNULL)

    def ok(self, *args):
        res = self(*args)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout.decode()

    def inspect(self, *args):
        doc = json.loads(self.ok(*args))
        return doc[0] if isinstance(doc, list) else doc

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


def _rootfs(path):
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
        os.makedirs(os.path.join(path, d))
    shutil.copy(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for applet in ("sh", "sleep"):
        os.symlink("busybox", os.path.join(path, "bin", applet))
    with open(os.path.join(path, "pause"), "w") as f:
        f.write(PAUSE)
    os.chmod(os.path.join(path, "pause"), 0o755)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def world():
    """A container with two labels, a pod with one container, a pod whose hostname is not its name."""
    tag = secrets.token_hex(4)
    prefix = "ccg-test-podstate-%s" % tag
    roots_before = {mp: os.path.isdir(mp + "/libpod_parent") for mp in read_hierarchies().values()}
    # A short path: conmon's socket paths are limited to 108 bytes.
    top = tempfile.mkdtemp(prefix="ccg-podstate-", dir="/tmp")
    pm = Podman(top)
    tree = CgroupTree(prefix, controllers=tuple(k for k in read_hierarchies() if k != "unified"))
    conmons = []
    w = {"pm": pm, "prefix": prefix, "labels": {"app": "web-" + tag, "tier": "front-" + tag}}
    try:
        _rootfs(top + "/rootfs")
        pm.import_rootfs(top + "/rootfs", IMAGE)
        tree._setup()
        parent = "/" + prefix
        w["solo"] = pm.ok("run", "-d", "--network", "none", "--name", "ccg-solo-" + tag, "--label",
                          "app=" + w["labels"]["app"], "--label", "tier=" + w["labels"]["tier"],
                          "--cgroup-parent", parent, IMAGE, "sleep", "600").split()[-1]
        w["pod"] = pm.ok("pod", "create", "--name", "ccg-pod-" + tag, "--cgroup-parent", parent,
                         "--network", "none", "--infra-image", IMAGE, "--infra-command", "/pause",
                         "--label", "podlabel=" + tag).split()[-1]
        w["member"] = pm.ok("run", "-d", "--pod", "ccg-pod-" + tag, "--name", "ccg-member-" + tag,
                            "--label", "inpod=" + tag, IMAGE, "sleep", "600").split()[-1]
        w["pod2"] = pm.ok("pod", "create", "--name", "ccg-pod2-" + tag, "--hostname", "elsewhere-" + tag,
                          "--cgroup-parent", parent, "--network", "none", "--infra-image", IMAGE,
                          "--infra-command", "/pause").split()[-1]
        pm.ok("pod", "start", w["pod2"])
        for key in ("solo", "member"):
            w[key + "_inspect"] = pm.inspect("container", "inspect", w[key])
        for key in ("pod", "pod2"):
            w[key + "_inspect"] = pod = pm.inspect("pod", "inspect", w[key])
            w[key + "_infra_inspect"] = pm.inspect("container", "inspect", pod["InfraContainerID"])
        for key in ("solo", "member", "pod_infra", "pod2_infra"):
            pid = w[key + "_inspect"]["State"]["ConmonPid"]
            if pid:
                conmons.append(pid)
        yield w
    finally:
        for pod in ("ccg-pod-" + tag, "ccg-pod2-" + tag):
            pm("pod", "rm", "-f", "-t", "0", pod)
        pm("rm", "-f", "-a", "-t", "0")
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in conmons) and time.monotonic() < deadline:
            time.sleep(0.1)
        pm("rmi", "-a", "-f")
        umount_under(top)
        shutil.rmtree(top, ignore_errors=True)
        left = tree.cleanup()
        strays = [mp for mp, was in roots_before.items() if not was and os.path.isdir(mp + "/libpod_parent")]
        assert left == [] and strays == [], (left, strays)
        assert not [p for p in conmons if _alive(p)], "conmon still running: %s" % conmons


def read(w, cid):
    return podman.read(HostRoot("/"), cid, storage_root=w["pm"].root, run_root=w["pm"].run)


def test_cgroups_are_where_the_plugin_finds_podman_containers(world):
    """The ids read are those of the cgroups (``libpod-<id>``), the pod's below ``/<prefix>/<pod id>``."""
    base = "/sys/fs/cgroup/memory/" + world["prefix"]
    assert os.path.isdir("%s/libpod-%s" % (base, world["solo"]))
    assert os.path.isdir("%s/%s/libpod-%s" % (base, world["pod"], world["member"]))
    infra = world["pod_inspect"]["InfraContainerID"]
    assert os.path.isdir("%s/%s/libpod-%s" % (base, world["pod"], infra))


def test_container_name_and_image_as_podman_inspect_reports(world):
    want = world["solo_inspect"]
    meta = read(world, world["solo"])
    assert (meta.name, meta.image) == (want["Name"], want["ImageName"]) == ("ccg-solo-" + world["prefix"][-8:], IMAGE)
    assert meta.pod is meta.pod_uid is meta.namespace is None and not meta.sandbox


def test_labels_are_only_in_podmans_database(world):
    """``podman inspect`` reports the two labels; podman 4.3 writes them to no file podman.read reads
    (containers.json, config.json) but only to libpod/bolt_state.db, so ``labels`` stays empty.  Should a
    later podman write them where it is read, this fails and tells."""
    want = world["solo_inspect"]["Config"]["Labels"]
    assert want == world["labels"]
    assert read(world, world["solo"]).labels == {}
    root = world["pm"].root
    store = root + "/vfs-containers"
    for path in (store + "/containers.json", "%s/%s/userdata/config.json" % (store, world["solo"])):
        with open(path, "rb") as f:
            data = f.read()
        assert not [v for v in want.values() if v.encode() in data], path
    with open(root + "/libpod/bolt_state.db", "rb") as f:
        db = f.read()
    assert all(v.encode() in db for v in want.values())


def test_pod_member_and_infra_container(world):
    pod = world["pod_inspect"]
    member, infra_want = world["member_inspect"], world["pod_infra_inspect"]
    meta = read(world, world["member"])
    assert (meta.name, meta.image) == (member["Name"], member["ImageName"])
    assert (meta.pod, meta.pod_uid) == (pod["Name"], pod["Id"]) == (pod["Name"], member["Pod"])
    assert not meta.sandbox and meta.namespace is None and not meta.in_pod
    assert not member["IsInfra"] and infra_want["IsInfra"]
    infra = read(world, pod["InfraContainerID"])
    assert (infra.name, infra.image) == (infra_want["Name"], infra_want["ImageName"])
    assert infra.sandbox is True
    assert (infra.pod, infra.pod_uid) == (pod["Name"], pod["Id"])
    assert infra.namespace is None


def test_pod_name_is_the_pods_hostname(world):
    """The pod's name is not on disk outside bolt_state.db: its hostname stands in for it, which is the
    name unless ``pod create --hostname`` says otherwise (then the hostname is reported)."""
    pod, infra_want = world["pod2_inspect"], world["pod2_infra_inspect"]
    infra = read(world, pod["InfraContainerID"])
    assert infra.sandbox is True and infra.pod_uid == pod["Id"] and infra.name == infra_want["Name"]
    assert infra.pod == pod["Hostname"] == "elsewhere-" + world["prefix"][-8:] != pod["Name"]


def test_podman_rename_is_seen_in_the_next_pass(world):
    """``podman rename`` rewrites containers.json: the resolver, which watches its directory, names the
    container anew in the next pass; podman's own inspect agrees."""
    r = resolver.MetadataResolver(HostRoot("/"), storage_root=world["pm"].root, run_root=world["pm"].run)

    def next_pass():
        r.begin_pass()
        return r.lookup("podman", world["solo"]).name
    old = world["solo_inspect"]["Name"]
    new = old + "-renamed"
    assert next_pass() == old and r.watch.dirs
    world["pm"].ok("rename", world["solo"], new)
    try:
        assert next_pass() == new == world["pm"].inspect("container", "inspect", world["solo"])["Name"]
    finally:
        world["pm"].ok("rename", world["solo"], old)
        r.watch.close()


def test_podman_rename_under_a_real_collectd(world, tmp_path):
    """The container under ``--cgroup-parent /<prefix>`` reported under its name by a real collectd (1 s
    passes), and under the new one within two passes of ``podman rename``."""
    from tests.e2e.test_docker_names_e2e import _passes_under, _values
    from tests.e2e.test_exit_e2e import start_collectd
    pm, old = world["pm"], world["solo_inspect"]["Name"]
    new = old + "-r"
    cd, out = start_collectd(tmp_path / "cd", "^/%s/nomatch$" % world["prefix"],
                             ['ContainersStorage "%s"' % pm.root, 'ContainersRunRoot "%s"' % pm.run,
                              'Runtimes "podman"'], base=("Interval 1", 'Metrics "cpu" "pids"'))
    with cd:
        harness.wait_until(lambda: _passes_under(_values(out), "podman-" + old) >= 2, 30, what="values of " + old)
        done = len(_values(out))
        pm.ok("rename", world["solo"], new)
        try:
            harness.wait_until(lambda: _passes_under(_values(out)[done:], "podman-" + new) >= 2, 30,
                               what="values under the new name")
        finally:
            pm.ok("rename", world["solo"], old)
        since = _values(out)[done:]
        first_new = since.index(("podman-" + new, "cpu", "total"))
        old_passes = _passes_under(since[:first_new], "podman-" + old)
        assert cd.read_failures() == []
    print("podman rename: %d pass(es) of 1 s still under the old name" % old_passes)
    assert old_passes <= 2, old_passes
