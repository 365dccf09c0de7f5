"""Names that follow the runtime (issue 20) under a real collectd and a real dockerd: a container under
``--cgroup-parent /<prefix>/apps`` (not Docker's ``docker`` parent) reported under its name, the data root
found in ``<HostRoot>/etc/docker/daemon.json`` (no DockerDataRoot), and ``docker rename`` shown in the
plugin's identifiers within two passes.

dockerd is the test's own (tests/support/dockerd.py), the container with --network none.  Values are read back through the JSON-lines writer of test_exit_e2e.
"""

import json
import os
import secrets

from ccg_lab.synthetic import CgroupTree, read_hierarchies
from tests.e2e.test_exit_e2e import _runc_bundle, start_collectd
from tests.support import collectd_harness as harness
from tests.support.dockerd import IMAGE, own_dockerd

INTERVAL = 1.0


def _values(out):
    """The value lists written so far, in order: [(plugin_instance, type, type_instance)]."""
    try:
        with open(out) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return []
    return [(v["instance"], v["type"], v["type_instance"]) for v in map(json.loads, lines)]


def _passes_under(values, instance):
    """Passes that dispatched ``instance`` in ``values`` (one cpu-total value list per pass)."""
    return sum(1 for v in values if v == (instance, "cpu", "total"))


def test_docker_rename_shows_within_two_passes(tmp_path):
    prefix = "ccg-test-names-%s" % secrets.token_hex(4)
    rootfs = str(tmp_path / "bundle" / "rootfs")
    _runc_bundle(str(tmp_path / "bundle"), "/unused")       # only its busybox rootfs
    with own_dockerd(str(tmp_path / "d"), rootfs) as d:
        docker, data = d.docker, d.data
        try:
            with CgroupTree(prefix, controllers=tuple(k for k in read_hierarchies() if k != "unified")) as tree:
                tree._setup()
                # No DockerDataRoot: the data root comes from <HostRoot>/etc/docker/daemon.json, in a
                # HostRoot tree of the test's own (this machine's /proc and /sys linked in, /etc untouched).
                host = str(tmp_path / "host")
                os.makedirs(host + "/etc/docker")
                for name in ("proc", "sys"):
                    os.symlink("/" + name, host + "/" + name)
                with open(host + "/etc/docker/daemon.json", "w") as f:
                    json.dump({"data-root": data, "storage-driver": "vfs"}, f)
                os.makedirs(os.path.dirname(host + data))
                os.symlink(data, host + data)
                cd, out = start_collectd(tmp_path / "cd", "^/%s/nomatch$" % prefix, ['HostRoot "%s"' % host],
                                         base=("Interval %g" % INTERVAL, 'Metrics "cpu" "pids"'))
                with cd:
                    run = docker("run", "-d", "--network", "none", "--name", "before",
                                 "--cgroup-parent", "/%s/apps" % prefix, IMAGE, "/bin/sleep", "600")
                    assert run.returncode == 0, run.stdout
                    harness.wait_until(lambda: _passes_under(_values(out), "docker-before") >= 2, 30,
                                       what="values under docker-before")
                    done = len(_values(out))
                    rn = docker("rename", "before", "after")
                    assert rn.returncode == 0, rn.stdout
                    harness.wait_until(lambda: _passes_under(_values(out)[done:], "docker-after") >= 2, 30,
                                       what="values under docker-after")
                    since = _values(out)[done:]
                    first_new = since.index(("docker-after", "cpu", "total"))
                    old_passes = _passes_under(since[:first_new], "docker-before")
                    assert _passes_under(since[first_new:], "docker-before") == 0, since   # never back
                    assert cd.read_failures() == []
                    assert "runtime state: DockerDataRoot %s (/etc/docker/daemon.json data-root)" % data \
                        in cd.log()
                    docker("rm", "-f", "after")
        finally:
            docker("rm", "-f", "before", "after")
    print("docker rename: %d pass(es) of %g s still under the old name" % (old_passes, INTERVAL))
    # the pass under way when the rename came may have named it already; the state file is looked at
    # every other pass: the new name comes within two passes
    assert old_passes <= 2, old_passes
