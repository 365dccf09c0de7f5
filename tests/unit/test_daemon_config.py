"""runtimes/daemon_config.py: the runtimes' state roots from the daemons' own configuration files under
HostRoot (Docker's daemon.json, containers/storage's storage.conf), the options winning, and the CLI
naming a Docker container through a data root only daemon.json names."""

import json
import os
import shutil

from collectd_cgroups.root import HostRoot
from collectd_cgroups.runtimes import daemon_config
from tests.support import fixtureutil as fu


def write(root, path, text):
    full = str(root) + path
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)


def test_defaults_without_any_file(tmp_path):
    roots = daemon_config.find(HostRoot(str(tmp_path)))
    assert (roots.docker_root, roots.storage_root, roots.run_root) == \
        ("/var/lib/docker", "/var/lib/containers/storage", "/run/containers/storage")
    assert roots.problems == [] and roots.sources == {}
    assert "DockerDataRoot /var/lib/docker (the default)" in daemon_config.describe(roots)


def test_roots_from_daemon_json_and_storage_conf(tmp_path):
    write(tmp_path, "/etc/docker/daemon.json", json.dumps({"data-root": "/srv/docker/", "log-level": "warn"}))
    write(tmp_path, "/etc/containers/storage.conf",
          '[storage]\ndriver = "overlay"\nrunroot = "/run/store"\ngraphroot = "/srv/store"\n'
          '[storage.options]\nadditionalimagestores = []\n')
    roots = daemon_config.find(HostRoot(str(tmp_path)))
    assert (roots.docker_root, roots.storage_root, roots.run_root) == ("/srv/docker", "/srv/store", "/run/store")
    text = daemon_config.describe(roots)
    assert "DockerDataRoot /srv/docker (/etc/docker/daemon.json data-root)" in text
    assert "ContainersStorage /srv/store (/etc/containers/storage.conf graphroot)" in text


def test_docker_graph_key_and_packaged_storage_conf(tmp_path):
    write(tmp_path, "/etc/docker/daemon.json", json.dumps({"graph": "/old/docker"}))
    write(tmp_path, "/usr/share/containers/storage.conf", '[storage]\ngraphroot = "/pkg/store"\n')
    roots = daemon_config.find(HostRoot(str(tmp_path)))
    assert (roots.docker_root, roots.storage_root, roots.run_root) == \
        ("/old/docker", "/pkg/store", "/run/containers/storage")


def test_the_options_win(tmp_path):
    write(tmp_path, "/etc/docker/daemon.json", json.dumps({"data-root": "/srv/docker"}))
    write(tmp_path, "/etc/containers/storage.conf", '[storage]\ngraphroot = "/srv/store"\nrunroot = "/r"\n')
    roots = daemon_config.find(HostRoot(str(tmp_path)), "/opt/d", None, "/opt/run")
    assert (roots.docker_root, roots.storage_root, roots.run_root) == ("/opt/d", "/srv/store", "/opt/run")
    assert roots.sources["DockerDataRoot"] == roots.sources["ContainersRunRoot"] == "the option"


def test_unusable_files_give_the_defaults_and_say_why(tmp_path):
    write(tmp_path, "/etc/docker/daemon.json", "{not json")
    write(tmp_path, "/etc/containers/storage.conf", "[storage\ngraphroot = 1")
    roots = daemon_config.find(HostRoot(str(tmp_path)))
    assert (roots.docker_root, roots.storage_root) == ("/var/lib/docker", "/var/lib/containers/storage")
    assert len(roots.problems) == 2 and "daemon.json: not JSON" in roots.problems[0]
    assert "storage.conf: not TOML" in roots.problems[1]
    # relative paths, wrong types, a list: ignored
    write(tmp_path, "/etc/docker/daemon.json", json.dumps({"data-root": "relative/path", "graph": 5}))
    write(tmp_path, "/etc/containers/storage.conf", '[storage]\ngraphroot = ["/x"]\nrunroot = "run"\n')
    roots = daemon_config.find(HostRoot(str(tmp_path)))
    assert (roots.docker_root, roots.storage_root, roots.run_root) == \
        ("/var/lib/docker", "/var/lib/containers/storage", "/run/containers/storage")
    write(tmp_path, "/etc/docker/daemon.json", json.dumps(["data-root"]))
    assert daemon_config.find(HostRoot(str(tmp_path))).problems == ["/etc/docker/daemon.json: not a JSON object"]


def test_cli_names_docker_containers_from_the_data_root_daemon_json_names(tmp_path):
    root = fu.copy_tree("hybrid-debian12", tmp_path)
    want = {e["plugin_instance"] for e in fu.cli_json(root)[0]}
    assert "docker-web1" in want
    os.makedirs(root + "/srv")
    shutil.move(root + "/var/lib/docker", root + "/srv/docker")
    named = {e["plugin_instance"] for e in fu.cli_json(root)[0]}
    assert "docker-web1" not in named           # no state where the default says
    write(root, "/etc/docker/daemon.json", json.dumps({"data-root": "/srv/docker"}))
    assert {e["plugin_instance"] for e in fu.cli_json(root)[0]} == want
