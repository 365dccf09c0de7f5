"""The collectd glue (collectd_cgroups.plugin) against a test double of the collectd module.

The plugin keeps module-level state (config blocks, instances) and registers
its callbacks at import, so every test installs a fresh fake_collectd in
sys.modules and imports the plugin afresh.
"""

import importlib
import subprocess
import sys
import textwrap

import pytest

from collectd_cgroups import collector as collector_mod
from collectd_cgroups import containers, identifiers, readers
from tests.support import CHECKOUT, fake_collectd
from tests.support.fake_collectd import module_block, option

NAME = "collectd_cgroups"


@pytest.fixture
def env(monkeypatch):
    """(fake collectd module, freshly imported plugin module)."""
    fake = fake_collectd.FakeCollectd()
    monkeypatch.setitem(sys.modules, "collectd", fake)
    sys.modules.pop("collectd_cgroups.plugin", None)
    plugin = importlib.import_module("collectd_cgroups.plugin")
    assert plugin.collectd is fake
    yield fake, plugin
    sys.modules.pop("collectd_cgroups.plugin", None)


def configure(fake, *options):
    fake.run_config(module_block(*options))


def instances(plugin):
    return list(plugin._instances)


def fake_container(name, runtime="cgroup"):
    c = containers.Container(runtime, "/pfx/%s" % name, name, "/pfx/%s" % name)
    c.dirs["/sys/fs/cgroup/memory"] = "/sys/fs/cgroup/memory/pfx/%s" % name
    return c


def result(name, samples=(("memory", "usage", (4096,)), ("cpu", "total", (7,)), ("count", "pids", (3,)))):
    c = fake_container(name)
    return collector_mod.ContainerSamples(c, identifiers.plugin_instance(c), list(samples))


def script(monkeypatch, instance, passes):
    """Make the instance's collector return ``passes`` one after the other (then the last one)."""
    passes = list(passes)

    def collect(containers=None, sink=None, interval=None):
        items = passes.pop(0) if len(passes) > 1 else passes[0]
        if sink is None:
            return items
        for item in items:      # as the collector does: each container handed over once read
            sink(item)
        return len(items)
    monkeypatch.setattr(instance.collector, "collect", collect)


# ---------------------------------------------------------------------------------------------------------
# Registration


def test_import_registers_config_init_shutdown_but_no_read(env):
    fake, plugin = env
    assert [name for _, _, name in fake.configs] == [NAME]
    assert len(fake.inits) == 1 and len(fake.shutdowns) == 1
    assert fake.reads == []        # read callbacks come from init, one per <Module> block


def test_no_module_block_gives_one_default_instance(env):
    fake, plugin = env
    fake.run_init()
    assert len(fake.reads) == 1
    read = fake.reads[0]
    assert read["name"] == NAME and read["interval"] is None    # collectd's global Interval
    (inst,) = instances(plugin)
    opts, defaults = inst.collector.options, collector_mod.Options()
    for attr in ("root", "groups", "per_cpu", "instance_format", "match", "ignore", "runtimes",
                 "docker_root", "storage_root"):
        assert getattr(opts, attr) == getattr(defaults, attr), attr
    assert inst.send_meta is False
    assert fake.messages("info", "instance %s ready" % NAME)
    assert not fake.messages("error") and not fake.messages("warning")


# ---------------------------------------------------------------------------------------------------------
# Options


def test_every_option_parsed_with_keys_in_any_case(env, tmp_path):
    (tmp_path / "proc").mkdir()         # a HostRoot has a proc/
    fake, plugin = env
    configure(fake,
              option("mAtCh", "^/batch/(?P<name>[^/]+)$", "batch"),
              option("MATCH", "^/other/(?P<id>[^/]+)$"),
              option("iGnOrE", "^/batch/skip", "^/other/x"),
              option("ignore", "^/more"),
              option("RUNTIMES", "docker", "lxc"),
              option("metrics", "cpu", "pids"),
              option("percpu", True),
              option("INSTANCEFORMAT", "{runtime}_{short_id}"),
              option("dockerDataRoot", "/srv/docker/"),
              option("containersstorage", "/srv/storage/"),
              option("HOSTROOT", str(tmp_path)),
              option("interval", 2.5),
              option("IGNOREVALUE", "memory-active_*", "vmpage_action-pgpg*"),
              option("ignorevalue", "total_time_in_ms-pressure_*_full"),
              option("KeepFilesOpen", False),
              option("SENDMETA", True))
    fake.run_init()
    (inst,) = instances(plugin)
    opts = inst.collector.options
    assert opts.match == [("^/batch/(?P<name>[^/]+)$", "batch"), ("^/other/(?P<id>[^/]+)$", "cgroup")]
    assert opts.ignore == ["^/batch/skip", "^/other/x", "^/more"]
    assert opts.runtimes == ("docker", "lxc")
    assert opts.groups == ("cpu", "pids")
    assert opts.per_cpu is True
    assert opts.instance_format == "{runtime}_{short_id}"
    assert opts.docker_root == "/srv/docker"
    assert opts.storage_root == "/srv/storage"
    assert opts.root == str(tmp_path)
    assert opts.ignore_values == ["memory-active_*", "vmpage_action-pgpg*", "total_time_in_ms-pressure_*_full"]
    assert opts.keep_files is False and inst.collector.kept is None
    assert inst.send_meta is True
    assert inst.interval == 2.5 and inst.values.interval == 2.5
    assert [(r["name"], r["interval"]) for r in fake.reads] == [(NAME, 2.5)]
    # The readers follow Metrics and PerCPU.
    assert {r.group for r in inst.collector.readers} == {"cpu", "pids"}
    assert any(getattr(r, "per_cpu", False) for r in inst.collector.readers)
    assert not fake.messages("error")


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("AUTO", "auto"), (True, True), (False, False)])
def test_keep_files_open_values(env, value, expected):
    fake, plugin = env
    configure(fake, option("KeepFilesOpen", value))
    fake.run_init()
    (inst,) = instances(plugin)
    assert inst.collector.options.keep_files == expected
    if expected is False:       # no pidfd kept either
        assert inst.collector.network.pidfds is None


@pytest.mark.parametrize("configured", [None, 2.5])
def test_each_pass_tells_the_collector_its_interval(env, monkeypatch, configured):
    """KeepFilesOpen auto needs the interval: the configured one, else the time since the last pass
    (the first pass, with none before it, counts as a long interval)."""
    fake, plugin = env
    configure(fake, *([option("Interval", configured)] if configured else []))
    fake.run_init()
    (inst,) = instances(plugin)
    seen = []

    def collect(containers=None, sink=None, interval=None):
        seen.append(interval)
        return 0
    monkeypatch.setattr(inst.collector, "collect", collect)
    clock = iter([100.0, 101.0, 103.5])
    monkeypatch.setattr(plugin, "_clock", lambda: next(clock))
    fake.run_reads(times=3)
    assert seen == ([float("inf"), 1.0, 2.5] if configured is None else [2.5, 2.5, 2.5])


def test_kubernetes_options(env):
    fake, plugin = env
    configure(fake, option("Pods", False), option("MetaLabel", "app", "team"), option("metalabel", "app.kubernetes.io/name"),
              option("ContainerdState", "/srv/ctrd/"), option("ContainerdState", "/run/k3s/containerd"),
              option("ContainersRunRoot", "/srv/run/"), option("InstanceFormat", "{namespace}.{pod}.{label:app}"))
    fake.run_init()
    (inst,) = instances(plugin)
    opts = inst.collector.options
    assert opts.pods is False and inst.collector.discovery.pods is False
    assert opts.meta_labels == ("app", "team", "app.kubernetes.io/name") and inst.meta_labels == opts.meta_labels
    assert opts.containerd_states == ("/srv/ctrd", "/run/k3s/containerd")     # the first one replaces the defaults
    assert opts.run_root == "/srv/run"
    defaults = collector_mod.Options()
    assert defaults.pods is True and defaults.meta_labels == ()
    assert defaults.containerd_states == ("/run/containerd", "/run/docker/containerd/daemon")


def test_booleans_false_and_defaults_kept(env):
    fake, plugin = env
    configure(fake, option("PerCPU", False), option("SendMeta", False))
    fake.run_init()
    (inst,) = instances(plugin)
    assert inst.collector.options.per_cpu is False and inst.send_meta is False
    assert fake.reads[0]["interval"] is None
    assert inst.values.interval == 0.0          # unset: collectd fills in the read interval


BAD = [
    ("Match", ()),
    ("Match", ("a", "b", "c")),
    ("Match", (1.0,)),
    ("Match", ("^/x/(?P<name>[^/]+$",)),
    ("Match", ("^/x/(?P<name>[^/]+)$", "two words")),
    ("Ignore", ()),
    ("Ignore", ("[",)),
    ("Runtimes", ()),
    ("Runtimes", ("docker", "rkt")),
    ("Metrics", ("disk",)),
    ("Metrics", (True,)),
    ("PerCPU", ("yes",)),
    ("PerCPU", (1.0,)),
    ("PerCPU", ()),
    ("InstanceFormat", ("{runtime}-{nope}",)),
    ("InstanceFormat", ("static",)),
    ("InstanceFormat", ("{name",)),
    ("InstanceFormat", ("{name}", "{id}")),
    ("DockerDataRoot", (1.0,)),
    ("DockerDataRoot", ()),
    ("ContainersStorage", ("/a", "/b")),
    ("HostRoot", (True,)),
    ("Interval", (-1.0,)),
    ("Interval", (0.0,)),
    ("Interval", ("10",)),
    ("Interval", (True,)),
    ("Interval", (1.0, 2.0)),
    ("SendMeta", ("true",)),
    ("SendMeta", (0.0,)),
    ("IgnoreValue", ()),
    ("IgnoreValue", ("",)),
    ("IgnoreValue", ("memory usage",)),
    ("IgnoreValue", (1.0,)),
    ("KeepFilesOpen", ()),
    ("KeepFilesOpen", ("sometimes",)),
    ("KeepFilesOpen", (1.0,)),
    ("KeepFilesOpen", (True, False)),
    ("Pods", ("no",)),
    ("MetaLabel", ()),
    ("MetaLabel", ("",)),
    ("MetaLabel", ("pod",)),            # a meta key of the plugin's own
    ("MetaLabel", (1.0,)),
    ("ContainerdState", ()),
    ("ContainersRunRoot", ("/a", "/b")),
    ("InstanceFormat", ("{label}",)),
    ("Bogus", ("x",)),
    # issue 15: values the README's table cannot honour
    ("Interval", (0.0001,)),
    ("InstanceFormat", ("{name!r}",)),
    ("InstanceFormat", ("{name:>500}",)),
    ("HostRoot", ("/nonexistent",)),
    ("HostRoot", ("relative/dir",)),
    ("HostRoot", ("/etc/hostname",)),
    ("HostRoot", ("/usr/share",)),          # a directory, but no proc/ below it
    ("DockerDataRoot", ("",)),
    ("DockerDataRoot", ("var/lib/docker",)),
    ("ContainersStorage", ("",)),
    ("ContainersRunRoot", ("",)),
    ("ContainerdState", ("/run/containerd", "")),
    ("MaxInterfaces", (0.0,)),
    ("MaxInterfaces", (2.5,)),
    ("MaxInterfaces", ("many",)),
    ("MaxDevices", (-1.0,)),
    ("MaxValues", (10.0,)),
    ("MaxValues", (1e12,)),
]


@pytest.mark.parametrize("key,values", [("Interval", (1.0,)), ("HostRoot", ("/",)), ("InstanceFormat", ("{name}",)),
                                        ("MaxInterfaces", (16.0,)), ("PerCPU", (True,)), ("Metrics", ("cpu",))])
def test_an_option_given_twice_is_an_error_unless_repeatable(env, key, values):
    fake, plugin = env
    with pytest.raises(plugin.ConfigError) as info:
        configure(fake, option(key, *values), option(key, *values))
    assert str(info.value).startswith("%s: given more than once" % key), str(info.value)


def test_repeatable_options_add_up(env):
    fake, plugin = env
    configure(fake, option("Match", "^/a/(?P<name>[^/]+)$"), option("Match", "^/b/(?P<name>[^/]+)$"),
              option("Interface", "eth0"), option("Interface", "eth1"), option("MaxValues", 500.0),
              option("MaxInterfaces", 4.0), option("MaxDevices", 2.0))
    opts = plugin._config_blocks[0][0]
    assert [m for m, _ in opts.match] == ["^/a/(?P<name>[^/]+)$", "^/b/(?P<name>[^/]+)$"]
    assert opts.interfaces == ["eth0", "eth1"]
    assert (opts.max_values, opts.max_interfaces, opts.max_devices) == (500, 4, 2)


@pytest.mark.parametrize("key,values", BAD, ids=["%s%r" % (k, v) for k, v in BAD])
def test_bad_value_raises_config_error_naming_the_option(env, key, values):
    fake, plugin = env
    with pytest.raises(plugin.ConfigError) as info:
        configure(fake, option("Match", "^/fine/(?P<name>[^/]+)$"), option(key, *values))
    assert str(info.value).startswith(key), str(info.value)
    errors = fake.messages("error")
    assert len(errors) == 1 and errors[0].startswith("%s: configuration error: %s" % (NAME, key)), errors
    assert plugin._config_blocks == []          # nothing half-configured is kept


def test_config_error_is_a_value_error(env):
    fake, plugin = env
    assert issubclass(plugin.ConfigError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# Instances and read callbacks


def test_two_blocks_two_read_callbacks(env):
    fake, plugin = env
    fake.run_config(module_block(option("Match", "^/a/(?P<name>[^/]+)$"), option("Interval", 5.0)),
                    module_block(option("Match", "^/b/(?P<name>[^/]+)$", "bee"),
                                 option("InstanceFormat", "{name}.{runtime}")))
    fake.run_init()
    assert [(r["name"], r["interval"]) for r in fake.reads] == [(NAME, 5.0), (NAME + "-1", None)]
    a, b = instances(plugin)
    assert a.collector.options.match == [("^/a/(?P<name>[^/]+)$", "cgroup")]
    assert b.collector.options.match == [("^/b/(?P<name>[^/]+)$", "bee")]
    assert b.collector.options.instance_format == "{name}.{runtime}"
    assert a.collector is not b.collector and a.values is not b.values
    assert fake.reads[0]["callback"] == a.read and fake.reads[1]["callback"] == b.read
    assert len(fake.messages("info", "ready")) == 2


def test_read_dispatches_samples(env, monkeypatch):
    fake, plugin = env
    configure(fake, option("Interval", 3.0))
    fake.run_init()
    (inst,) = instances(plugin)
    script(monkeypatch, inst, [[result("web"), result("db", [("count", "pids", (1,))])]])
    fake.run_reads()
    got = [(d["plugin"], d["plugin_instance"], d["type"], d["type_instance"], d["values"], d["interval"])
           for d in fake.dispatched]
    assert got == [
        ("container", "cgroup-web", "memory", "usage", (4096,), 3.0),
        ("container", "cgroup-web", "cpu", "total", (7,), 3.0),
        ("container", "cgroup-web", "count", "pids", (3,), 3.0),
        ("container", "cgroup-db", "count", "pids", (1,), 3.0),
    ]
    assert all(d["meta"] == {} for d in fake.dispatched)        # SendMeta is off by default
    assert all(d["host"] == "" and d["time"] == 0.0 for d in fake.dispatched)   # collectd fills them in


def test_send_meta_attaches_each_containers_meta(env, monkeypatch):
    fake, plugin = env
    configure(fake, option("SendMeta", True))
    fake.run_init()
    (inst,) = instances(plugin)
    script(monkeypatch, inst, [[result("web"), result("db")]])
    fake.run_reads()
    metas = {d["plugin_instance"]: d["meta"] for d in fake.dispatched}
    assert metas == {
        "cgroup-web": {"runtime": "cgroup", "container_id": "/pfx/web", "cgroup": "/pfx/web"},
        "cgroup-db": {"runtime": "cgroup", "container_id": "/pfx/db", "cgroup": "/pfx/db"},
    }
    assert len(fake.dispatched) == 6


def test_interface_values_carry_the_host_veth_with_or_without_send_meta(env, monkeypatch):
    fake, plugin = env
    for send_meta in (False, True):
        fake.dispatched.clear()
        inst = plugin.Instance(collector_mod.Options(), send_meta=send_meta)
        c = fake_container("web")
        samples = [("if_octets", "eth0", (10, 20)), ("if_octets", "eth1", (1, 2)),
                   ("if_packets", "eth0", (3, 4)), ("memory", "usage", (4096,))]
        item = collector_mod.ContainerSamples(c, identifiers.plugin_instance(c), samples, {"eth0": "veth1a2b"})
        script(monkeypatch, inst, [[item]])
        inst.read()
        metas = {(d["type"], d["type_instance"]): d["meta"] for d in fake.dispatched}
        base = c.meta() if send_meta else {}
        assert metas[("if_octets", "eth0")] == dict(base, host_interface="veth1a2b")
        assert metas[("if_packets", "eth0")] == dict(base, host_interface="veth1a2b")
        assert metas[("if_octets", "eth1")] == base          # no host peer known
        assert metas[("memory", "usage")] == base


def test_read_never_raises_when_the_collector_raises_and_logs_once(env, monkeypatch):
    fake, plugin = env
    configure(fake, option("Match", "^/x/(?P<name>[^/]+)$"))
    fake.run_init()
    (inst,) = instances(plugin)
    calls = []

    def boom(containers=None, sink=None, interval=None):
        calls.append(1)
        raise RuntimeError("collector exploded")
    monkeypatch.setattr(inst.collector, "collect", boom)
    fake.run_reads(times=5)                       # must not raise
    assert len(calls) == 5
    failures = fake.messages(containing="collector exploded")
    assert len(failures) == 1, fake.logs
    assert failures[0].startswith(NAME + ": ")
    assert fake.dispatched == []
    # Recovery: the next good pass dispatches again.
    script(monkeypatch, inst, [[result("web")]])
    fake.run_reads()
    assert len(fake.dispatched) == 3


def test_read_never_raises_when_dispatch_fails(env, monkeypatch):
    fake, plugin = env
    fake.run_init()
    (inst,) = instances(plugin)
    script(monkeypatch, inst, [[result("web")]])

    def refuse(record):
        raise fake_collectd.DispatchError("queue full")
    fake.dispatch_hook = refuse
    fake.run_reads(times=4)
    assert len(fake.messages(containing="queue full")) == 1, fake.logs


@pytest.mark.parametrize("batch", [1, 3, 10000])
def test_values_go_out_in_batches_during_the_pass_and_a_refused_one_costs_only_itself(env, monkeypatch, batch):
    """The real collector hands each container over as soon as it is read; the plugin dispatches once
    DISPATCH_BATCH values are waiting (and the rest at the end of the pass), in order.  A container whose
    dispatch fails costs only itself, logged once."""
    fake, plugin = env
    monkeypatch.setattr(plugin, "DISPATCH_BATCH", batch)
    configure(fake, option("Metrics", "memory", "pids"))
    fake.run_init()
    (inst,) = instances(plugin)
    web, db, app = fake_container("web"), fake_container("db"), fake_container("app")
    monkeypatch.setattr(inst.collector, "discover", lambda: [web, db, app])
    seen = []       # dispatched (or refused) so far, when each container is read

    def read(container):
        seen.append(len(fake.dispatched) + len(refused_values))
        return [("memory", "usage", (1,)), ("count", "pids", (2,))]
    monkeypatch.setattr(inst.collector, "read_container", lambda c, *rest: read(c))
    refused_values = []

    def refuse(record):
        if record["plugin_instance"] == "cgroup-db":
            refused_values.append(record)
            raise fake_collectd.DispatchError("queue full")
    fake.dispatch_hook = refuse
    fake.run_reads()
    expected_seen = {1: [0, 2, 3], 3: [0, 0, 3], 10000: [0, 0, 0]}[batch]
    assert seen == expected_seen
    fake.run_reads(times=2)
    got = [(d["plugin_instance"], d["type"]) for d in fake.dispatched]
    assert got == [("cgroup-web", "memory"), ("cgroup-web", "count"),
                   ("cgroup-app", "memory"), ("cgroup-app", "count")] * 3
    refused = fake.messages("warning", "queue full")
    assert len(refused) == 1 and "/pfx/db" in refused[0], fake.logs
    assert len(fake.messages("info", "3 container(s) found")) == 1, fake.logs


def test_ignore_value_leaves_out_matching_value_lists(env, monkeypatch):
    """IgnoreValue patterns match "type-type_instance" (or the bare type), as the README's table names them."""
    fake, plugin = env
    configure(fake, option("Metrics", "memory"),
              option("IgnoreValue", "memory-active_*", "vmpage_action-pgpg*"),
              option("IgnoreValue", "if_*-eth1", "count"))
    fake.run_init()
    (inst,) = instances(plugin)
    web = fake_container("web")
    monkeypatch.setattr(inst.collector, "discover", lambda: [web])
    samples = [("memory", "usage", (1,)), ("memory", "active_anon", (2,)), ("memory", "inactive_anon", (3,)),
               ("vmpage_action", "pgpgin", (4,)), ("vmpage_action", "pgfault", (5,)),
               ("if_octets", "eth0", (6, 7)), ("if_octets", "eth1", (8, 9)), ("count", "", (1,)),
               ("count", "pids", (2,))]
    monkeypatch.setattr(inst.collector, "read_container", lambda c, *rest: list(samples))
    fake.run_reads(times=2)
    got = [(d["type"], d["type_instance"]) for d in fake.dispatched]
    assert got == [("memory", "usage"), ("memory", "inactive_anon"), ("vmpage_action", "pgfault"),
                   ("if_octets", "eth0"), ("count", "pids")] * 2


def test_a_container_whose_values_are_all_ignored_is_not_reported(env, monkeypatch):
    fake, plugin = env
    configure(fake, option("Metrics", "memory"), option("IgnoreValue", "*"))
    fake.run_init()
    (inst,) = instances(plugin)
    monkeypatch.setattr(inst.collector, "discover", lambda: [fake_container("web")])
    monkeypatch.setattr(inst.collector, "read_container", lambda c, *rest: [("memory", "usage", (1,))])
    fake.run_reads()
    assert fake.dispatched == []
    assert fake.messages("info", "no container found")


def test_read_never_raises_on_a_real_pass_that_goes_wrong(env, monkeypatch):
    """The real collector with a broken reader: contained per container, logged once."""
    fake, plugin = env
    fake.run_init()
    (inst,) = instances(plugin)

    def broken_read(container, *rest):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(inst.collector, "read_container", broken_read)
    c = fake_container("web")
    monkeypatch.setattr(inst.collector, "discover", lambda: [c])
    fake.run_reads(times=3)
    assert fake.dispatched == []
    assert len(fake.messages("warning", "/pfx/web: skipped")) == 1, fake.logs


def test_no_container_message_logged_once_per_transition(env, monkeypatch):
    fake, plugin = env
    fake.run_init()
    (inst,) = instances(plugin)
    passes = [[], [], [], [result("web")], [result("web"), result("db")], [result("web")], [], [], [result("db")]]
    script(monkeypatch, inst, passes)
    fake.run_reads(times=len(passes))
    transitions = [m for m in fake.messages("info") if "container found" in m or "container(s) found" in m]
    assert transitions == [
        NAME + ": no container found (start one, or run `make demo`)",
        NAME + ": 1 container(s) found",
        NAME + ": no container found (start one, or run `make demo`)",
        NAME + ": 1 container(s) found",
    ], transitions


def test_dispatched_identifiers_respect_collectd_limits(env, monkeypatch):
    """A long, odd container name still gives a valid identifier (checked by the fake's dispatch)."""
    fake, plugin = env
    fake.run_init()
    (inst,) = instances(plugin)
    c = containers.Container("cgroup", "/x/" + "n" * 300, "we b/\u00e9" + "n" * 300, "/x/y")
    item = collector_mod.ContainerSamples(c, identifiers.plugin_instance(c), [("count", "pids", (1,))])
    script(monkeypatch, inst, [[item]])
    fake.run_reads()
    (d,) = fake.dispatched
    assert len(d["plugin_instance"]) <= 127 and "/" not in d["plugin_instance"] and " " not in d["plugin_instance"]


def test_every_sample_type_is_a_stock_type(env):
    """What the readers emit fits collectd's types.db: the fake's dispatch would refuse anything else."""
    fake, plugin = env
    stock = fake_collectd.load_types()
    for type_, sources in identifiers.TYPES.items():
        assert type_ in stock
        assert tuple(t.upper() for _, t in sources) == tuple(t.upper() for _, t in stock[type_])
    for reader in readers.build(readers.GROUPS, per_cpu=True):
        assert reader.group in readers.GROUPS


def test_shutdown_drops_instances(env):
    fake, plugin = env
    fake.run_init()
    assert len(instances(plugin)) == 1
    fake.run_shutdown()
    assert instances(plugin) == []


def test_fresh_import_per_test_has_no_leftover_state(env):
    fake, plugin = env
    assert plugin._config_blocks == [] and plugin._instances == []


def test_a_pass_loads_no_heavy_module():
    """The plugin's import and a pass on this host stay off libcrypto (hashlib: 3.7 MiB of collectd's RSS),
    pycparser (cffi's in-process cdef: 2.7 MiB) and the exit watcher's subprocess/shutil: a fresh
    interpreter with a stand-in collectd module."""
    code = textwrap.dedent("""
        import sys, types
        stub = types.ModuleType("collectd")
        stub.Values = type("Values", (), {"__init__": lambda self, **kw: None, "dispatch": lambda self: None})
        for hook in ("register_config", "register_init", "register_read", "register_shutdown",
                     "info", "warning", "error", "notice", "debug"):
            setattr(stub, hook, lambda *a, **kw: None)
        sys.modules["collectd"] = stub
        from collectd_cgroups import netns, plugin
        instance = plugin.Instance(plugin.Options())
        instance.read()
        netns._cffi_setns()
        print(" ".join(sorted(m for m in sys.modules
                              if m.split(".")[0] in ("hashlib", "_hashlib", "pycparser", "subprocess", "shutil"))))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=CHECKOUT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == [], out.stdout.decode()
