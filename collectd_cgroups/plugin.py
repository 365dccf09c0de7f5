"""collectd glue: config, init, read, shutdown.  The only module that imports collectd.

Load with::

    <Plugin python>
      Import "collectd_cgroups.plugin"
      <Module "collectd_cgroups.plugin">
        ...options...
      </Module>
    </Plugin>

Each ``<Module>`` block is one independent instance with its own read
callback (several blocks may watch different hosts roots or runtimes).
"""

import collectd

from . import identifiers
from .collector import Collector, Options

NAME = "collectd_cgroups"


def _log(fn):
    return lambda msg: fn("%s: %s" % (NAME, msg))


class ConfigError(ValueError):
    pass


def _strings(node, minimum=1, maximum=None):
    values = node.values
    if len(values) < minimum or (maximum is not None and len(values) > maximum) \
            or not all(isinstance(v, str) for v in values):
        want = "%d" % minimum if minimum == maximum else "%d or more" % minimum if maximum is None \
            else "%d to %d" % (minimum, maximum)
        raise ConfigError("%s: expects %s string argument(s), got %r" % (node.key, want, list(values)))
    return list(values)


def _bool(node):
    if len(node.values) != 1 or not isinstance(node.values[0], bool):
        raise ConfigError("%s: expects true or false, got %r" % (node.key, list(node.values)))
    return node.values[0]


def _number(node):
    if len(node.values) != 1 or isinstance(node.values[0], bool) \
            or not isinstance(node.values[0], (int, float)) or node.values[0] <= 0:
        raise ConfigError("%s: expects a positive number, got %r" % (node.key, list(node.values)))
    return float(node.values[0])


def parse_config(node):
    """A <Module> block -> (Options, interval, send_meta).  ConfigError names the option."""
    opts = Options()
    interval = None
    send_meta = False
    for child in node.children:
        key = child.key.lower()
        if key == "match":
            values = _strings(child, 1, 2)
            opts.match.append((values[0], values[1] if len(values) > 1 else "cgroup"))
        elif key == "ignore":
            opts.ignore.extend(_strings(child))
        elif key == "runtimes":
            opts.runtimes = tuple(_strings(child))
        elif key == "metrics":
            opts.groups = tuple(_strings(child))
        elif key == "percpu":
            opts.per_cpu = _bool(child)
        elif key == "instanceformat":
            opts.instance_format = _strings(child, 1, 1)[0]
        elif key == "dockerdataroot":
            opts.docker_root = _strings(child, 1, 1)[0].rstrip("/")
        elif key == "containersstorage":
            opts.storage_root = _strings(child, 1, 1)[0].rstrip("/")
        elif key == "hostroot":
            opts.root = _strings(child, 1, 1)[0]
        elif key == "interval":
            interval = _number(child)
        elif key == "sendmeta":
            send_meta = _bool(child)
        else:
            raise ConfigError("%s: unknown option (known: Match, Ignore, Runtimes, Metrics, PerCPU, "
                              "InstanceFormat, DockerDataRoot, ContainersStorage, HostRoot, "
                              "Interval, SendMeta)" % child.key)
    try:
        opts.validate()
    except ValueError as e:
        raise ConfigError(str(e))
    return opts, interval, send_meta


class Instance(object):
    """One <Module> block: a collector and a reusable collectd.Values."""

    def __init__(self, options, interval=None, send_meta=False):
        self.collector = Collector(options, warn=_log(collectd.warning), info=_log(collectd.info))
        self.interval = interval
        self.send_meta = send_meta
        self.values = collectd.Values(plugin=identifiers.PLUGIN)
        if interval:
            self.values.interval = interval
        self.had_containers = None

    def read(self, data=None):
        try:
            self._read()
        except Exception as e:  # never raise: collectd would back off the whole plugin
            self.collector.warn_once(("read", repr(e)), "read pass failed: %r" % (e,))

    def _read(self):
        results = self.collector.collect()
        if bool(results) != self.had_containers:
            self.had_containers = bool(results)
            collectd.info("%s: %s" % (NAME, "%d container(s) found" % len(results) if results else
                                      "no container found (start one, or run `make demo`)"))
        v = self.values
        for item in results:
            v.plugin_instance = item.instance
            if self.send_meta:
                v.meta = item.container.meta()
            for type_, type_instance, values in item.samples:
                v.type = type_
                v.type_instance = type_instance
                v.values = values
                v.dispatch()


_config_blocks = []
_instances = []


def configure(node):
    # Raising here makes collectd stop with "Parsing the config file failed!"
    # (exit status 1, also for `collectd -T`): a bad option never starts a
    # half-configured plugin.
    try:
        _config_blocks.append(parse_config(node))
    except ConfigError as e:
        collectd.error("%s: configuration error: %s" % (NAME, e))
        raise


def init():
    blocks = _config_blocks or [(Options(), None, False)]
    for n, (opts, interval, send_meta) in enumerate(blocks):
        instance = Instance(opts, interval, send_meta)
        _instances.append(instance)
        name = NAME if n == 0 else "%s-%d" % (NAME, n)
        if interval:
            collectd.register_read(instance.read, interval, name=name)
        else:
            collectd.register_read(instance.read, name=name)
        collectd.info("%s: instance %s ready; %s" % (
            NAME, name, " ".join(instance.collector.hierarchies().describe().split())))


def shutdown():
    del _instances[:]


collectd.register_config(configure, name=NAME)
collectd.register_init(init)
collectd.register_shutdown(shutdown)
