"""A bare 64-hex cgroup under a parent of no known layout (``--cgroup-parent /somewhere``) is reported as
the runtime whose on-disk state has that id (runtimes/known_ids.py), through ``--root`` over the captured
hybrid tree with its Docker container moved under another parent; an id no runtime knows stays out."""

import json
import os

from tests.support import fixtureutil as fu

CID = "42d3110fba6d07b2eecbaeb61e740cbe171b74c89da98ae5a4afccf80fecad77"
STRANGER = "ab" * 32
HIERARCHIES = ("blkio", "cpu", "cpuacct", "memory", "pids", "unified")


def _moved(tmp_path, parent):
    """The hybrid tree with the Docker container's cgroups at ``<parent>/<id>`` in every hierarchy."""
    root = fu.copy_tree("hybrid-debian12", tmp_path)
    for h in HIERARCHIES:
        base = "%s/sys/fs/cgroup/%s" % (root, h)
        if os.path.isdir(base + "/docker/" + CID):
            os.makedirs(base + parent)
            os.rename(base + "/docker/" + CID, base + parent + "/" + CID)
    return root


def _by_cgroup(root):
    entries, _ = fu.cli_json(root)
    return {e["meta"]["cgroup"]: e["plugin_instance"] for e in entries}


def test_docker_container_under_any_cgroup_parent(tmp_path):
    before = fu.values(fu.cli_json(fu.tree("hybrid-debian12"))[0])["docker-web1"]
    root = _moved(tmp_path, "/somewhere/deeper")
    # a cgroup named like an id that no runtime has: not a container
    for h in HIERARCHIES:
        os.makedirs("%s/sys/fs/cgroup/%s/somewhere/%s" % (root, h, STRANGER))
    found = _by_cgroup(root)
    assert found["/somewhere/deeper/" + CID] == "docker-web1"
    assert not [c for c in found if STRANGER in c]
    assert fu.values(fu.cli_json(root)[0])["docker-web1"] == before       # the same figures
    # its state gone: no longer a container
    os.rename(root + "/var/lib/docker/containers/" + CID, root + "/var/lib/docker/" + CID)
    assert "/somewhere/deeper/" + CID not in _by_cgroup(root)


def test_containerd_task_bundle_under_any_cgroup_parent(tmp_path):
    root = _moved(tmp_path, "/ctr-clients")
    os.rename(root + "/var/lib/docker/containers/" + CID, root + "/var/lib/docker/" + CID)   # not Docker's
    bundle = root + "/run/containerd/io.containerd.runtime.v2.task/default/" + CID
    os.makedirs(bundle)
    with open(bundle + "/config.json", "w") as f:
        json.dump({"ociVersion": "1.0.2", "annotations": {}}, f)
    assert _by_cgroup(root)["/ctr-clients/" + CID] == "containerd-" + CID[:12]
    # --runtimes without containerd: not reported
    rc, out, err = fu.run_cli(["--root", root, "--json", "--runtimes", "docker", "lxc"])
    assert rc == 0 and CID not in out
