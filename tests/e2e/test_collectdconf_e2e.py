"""collectdconf against collectd 5.12 itself: the <Module "collectd_cgroups"> block collectd hands the
Python plugin (dumped by a stand-in module registered under the plugin's name, from `collectd -T`, which
reads the configuration, runs init and one read, and exits) is the block --config finds, node for node,
and gives the same Options through parse_config."""

import json
import os
import subprocess
import textwrap

from collectd_cgroups import collectdconf, config
from tests.support import collectd_harness, fake_collectd

# Registered under the plugin's name, so collectd hands it every <Module "collectd_cgroups"> block.
DUMPER = '''
import collectd, json, os

def tree(node):
    return [node.key, list(node.values), [tree(c) for c in node.children], node.parent is None]

def configure(node):
    with open(os.environ["CCG_DUMP"], "a") as f:
        f.write(json.dumps(tree(node)) + "\\n")

collectd.register_config(configure, name="collectd_cgroups")
'''

DROP_IN = r'''
<Plugin python>
  Import "ccg_dump"
  <Module "collectd_cgroups">
    Match "^/batch/(?P<name>[^/]+)$" "batch"
    Match "^/jobs/(?P<id>[0-9a-f]{12})\\.scope$"   # \\. in the file: \. in the regex
    Ignore "^/batch/skip" \
           "^/batch/also"
    Runtimes "docker" "lxc" "nspawn"
    Metrics "cpu" "memory" "pids"
    PerCPU true
    InstanceFormat "{runtime}_{name}"
    DockerDataRoot "/srv/docker/"
    ContainersStorage "/srv/storage"
    ContainersRunRoot "/run/x"
    ContainerdState "/run/a" "/run/b"
    Pods off
    MetaLabel "app" "tier"
    Interface "/^veth/" "eth0"
    IgnoreSelected no
    IgnoreValue "memory-active_*" "vmpage_action-*"
    Interval 2.5
    SendMeta yes
    CollectOnExit false
    KeepFilesOpen auto
    MaxInterfaces 0x20
    MaxDevices 010
    MaxValues 500
    HostRoot "/"
  </Module>
</Plugin>
'''


def test_collectd_hands_the_plugin_the_block_collectdconf_finds(tmp_path):
    with open(str(tmp_path / "ccg_dump.py"), "w") as f:
        f.write(DUMPER)
    conf_d = tmp_path / "collectd.conf.d"
    conf_d.mkdir()
    with open(str(conf_d / "collectd-cgroups.conf"), "w") as f:
        f.write(DROP_IN)
    with open(str(conf_d / "README"), "w") as f:
        f.write("not a configuration <\n")
    main = str(tmp_path / "collectd.conf")
    with open(main, "w") as f:
        f.write(textwrap.dedent('''\
            BaseDir "%s"
            PIDFile "%s/collectd.pid"
            Interval 10
            <LoadPlugin python>
              Globals true
            </LoadPlugin>
            <Plugin python>
              ModulePath "%s"
            </Plugin>
            <Include "%s">
              Filter "*.conf"
            </Include>
            ''' % (tmp_path, tmp_path, tmp_path, conf_d)))
    dump = str(tmp_path / "dump.jsonl")
    res = subprocess.run([collectd_harness.COLLECTD, "-T", "-C", main], env=dict(os.environ, CCG_DUMP=dump),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert res.returncode == 0, res.stdout.decode()
    with open(dump) as f:
        (given,) = [json.loads(line) for line in f]
    assert given[3] is True                     # collectd hands the block with no parent

    (found,) = collectdconf.module_blocks(collectdconf.read_config(main))

    def tree(node):
        return [node.key, list(node.values), [tree(c) for c in node.children]]

    def strip(t):
        return [t[0], t[1], [strip(c) for c in t[2]]]
    assert tree(found) == strip(given)
    assert [type(v) for c in found.children for v in c.values] == [type(v) for c in given[2] for v in c[1]]

    def config_node(t):
        return fake_collectd.Config(t[0], t[1], [config_node(c) for c in t[2]])
    theirs = config.parse_config(config_node(given))[0]
    ours, _ = collectdconf.block_options(found)
    assert ours == theirs
    assert ours.match[1] == (r"^/jobs/(?P<id>[0-9a-f]{12})\.scope$", "cgroup")
    assert (ours.max_interfaces, ours.max_devices, ours.pods, ours.send_meta) == (32, 10, False, True)
