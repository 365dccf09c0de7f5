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

import gc

import collectd

from . import identifiers, sentinel
from .collector import Collector, Options
from .config import ConfigError, parse_config  # noqa: F401 (ConfigError re-exported)

NAME = "collectd_cgroups"


def _log(fn):
    return lambda msg: fn("%s: %s" % (NAME, msg))


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
        self._empty_meta = {}   # the meta of every value when SendMeta is off (never changed)
        # CollectOnExit (issue 6): a watcher thread with a collector of its own places sentinels and
        # dispatches each exited container's final figures from that thread (collectd.Values is thread-safe).
        self.watcher = None
        if getattr(options, "collect_on_exit", False):
            self.watcher = sentinel.Watcher(
                Collector(options, warn=_log(collectd.warning), info=_log(collectd.info)),
                on_final=self.dispatch_final, warn=_log(collectd.warning), info=_log(collectd.info),
                state_file=sentinel.STATE_FILE).start()

    def dispatch_final(self, final):
        """CollectOnExit: every sample once more and the lifetime totals, with meta final=true."""
        v = collectd.Values(plugin=identifiers.PLUGIN, plugin_instance=final.instance)
        if self.interval:
            v.interval = self.interval
        v.meta = dict(final.container.meta() if self.send_meta else {}, final=True)
        for type_, type_instance, values in final.value_lists():
            v.type = type_
            v.type_instance = type_instance
            v.values = values
            v.dispatch()

    def read(self, data=None):
        try:
            self._read()
        except Exception as e:  # never raise: collectd would back off the whole plugin
            self.collector.warn_once(("read", repr(e)), "read pass failed: %r" % (e,))

    def _read(self):
        # A pass allocates a few hundred thousand short-lived objects (samples, file contents), all freed
        # when it ends: with the cycle collector on, they would trigger collections that also walk every
        # long-lived object, so the cost of a pass would grow faster than the number of containers.  It
        # is off for the pass (only if it was on: another plugin may have turned it off itself).
        gc_was_on = gc.isenabled()
        if gc_was_on:
            gc.disable()
        try:
            results = self.collector.collect()
            if bool(results) != self.had_containers:
                self.had_containers = bool(results)
                collectd.info("%s: %s" % (NAME, "%d container(s) found" % len(results) if results else
                                          "no container found (start one, or run `make demo`)"))
            # The dispatch loop runs once per value (tens of thousands a pass on a big host): each
            # attribute set costs collectd a conversion (for ``type`` a types.db lookup too), so only what
            # changed is set.
            v = self.values
            send_meta = self.send_meta
            empty = self._empty_meta
            last_type = None
            for item in results:
                v.plugin_instance = item.instance
                meta = item.container.meta() if send_meta else empty
                if v.meta is not meta:
                    v.meta = meta
                peers = item.peers
                with_peer = {}
                for type_, type_instance, values in item.samples:
                    if peers:
                        # Interface values carry the host end of their veth pair.
                        peer = peers.get(type_instance) if type_instance in peers and type_.startswith("if_") \
                            else None
                        if peer:
                            wanted = with_peer.get(peer)
                            if wanted is None:
                                wanted = with_peer[peer] = dict(meta, **{identifiers.HOST_INTERFACE_META: peer})
                        else:
                            wanted = meta
                        if v.meta is not wanted:
                            v.meta = wanted
                    if type_ is not last_type:
                        v.type = last_type = type_
                    v.type_instance = type_instance
                    v.values = values
                    v.dispatch()
        finally:
            if gc_was_on:
                gc.enable()


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
    for instance in _instances:
        if instance.watcher is not None:    # CollectOnExit: every sentinel leaves and exits
            instance.watcher.stop()
    del _instances[:]


collectd.register_config(configure, name=NAME)
collectd.register_init(init)
collectd.register_shutdown(shutdown)
