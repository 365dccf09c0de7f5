"""collectd glue: config, init, read, shutdown.  The only module that imports collectd.

Load with::

    <Plugin python>
      Import "collectd_cgroups.plugin"
      <Module "collectd_cgroups">
        ...options...
      </Module>
    </Plugin>

Each ``<Module>`` block is one independent instance with its own read
callback (several blocks may watch different hosts roots or runtimes).
"""

import gc
import time

import collectd

from . import events, identifiers
from .collector import Collector, Options
from .config import ConfigError, parse_config  # noqa: F401 (ConfigError re-exported)

NAME = "collectd_cgroups"

# Values are handed to collectd in batches of about this many as the pass goes on.  collectd queues every
# dispatched value for its write threads: a whole pass at once (47,000 values at 1000 containers) held
# about 16 MiB of queued copies at its peak, and one container at a time (47 values) woke a write thread
# for nearly every value, doubling collectd's CPU time; batches of a few thousand cost neither.
DISPATCH_BATCH = 2048

# collectd's notification messages hold 255 characters (NOTIF_MAX_MSG_LEN).
MAX_MESSAGE = 255

_clock = time.monotonic


def _log(fn):
    return lambda msg: fn("%s: %s" % (NAME, msg))


class Instance(object):
    """One <Module> block: a collector and a reusable collectd.Values."""

    def __init__(self, options, interval=None, send_meta=None):
        self.collector = Collector(options, warn=_log(collectd.warning), info=_log(collectd.info))
        self.interval = interval if interval is not None else options.interval
        self.send_meta = send_meta if send_meta is not None else options.send_meta
        self.meta_labels = options.meta_labels      # MetaLabel: labels added to the meta data
        interval = self.interval
        self.values = collectd.Values(plugin=identifiers.PLUGIN)
        if interval:
            self.values.interval = interval
        self.had_containers = None
        self._empty_meta = {}   # the meta of every value when SendMeta is off (never changed)
        self._last_type = None  # the type self.values holds (set only when it changes)
        self._pending = []      # containers read and not yet dispatched (see DISPATCH_BATCH)
        self._pending_values = 0
        self._last_pass = None  # _clock() at the start of the last pass
        # The time between the last two passes: the interval of final figures when the block has no
        # Interval of its own.  They are dispatched from the exit watcher's thread, which has no plugin
        # context: without an interval collectd logs "Unable to determine Interval" for every value list.
        self._seen_interval = None
        # CollectOnExit (issue 6): a watcher thread with a collector of its own places sentinels and
        # dispatches each exited container's final figures from that thread (collectd.Values is thread-safe).
        # Notify: events of the containers as notifications (events.py), said once when they happen.
        self.tracker = None
        if options.notify:
            self.tracker = events.Tracker(
                options.notify, memory_high=options.memory_high,
                throttled=options.throttled_share, wait_finals=options.collect_on_exit,
                meta=lambda c: c.meta(self.meta_labels))
        self.watcher = None
        if options.collect_on_exit:
            from . import sentinel      # imported only here: subprocess and shutil cost collectd ~1 MiB
            # Its own collector (another thread), sharing the naming: finals go out under the live names.
            self.watcher = sentinel.Watcher(
                Collector(options, warn=_log(collectd.warning), info=_log(collectd.info),
                          naming=self.collector.naming),
                on_final=self.dispatch_final, warn=_log(collectd.warning), info=_log(collectd.info),
                state_file=sentinel.STATE_FILE).start()

    def dispatch_final(self, final):
        """CollectOnExit: every sample once more and the lifetime totals, with meta final=true."""
        v = collectd.Values(plugin=identifiers.PLUGIN, plugin_instance=final.instance)
        interval = self.interval or self._seen_interval
        if interval:
            v.interval = interval
        meta = dict(final.container.meta(self.meta_labels) if self.send_meta else {}, final=True)
        for group_meta, samples in identifiers.meta_groups(final.value_lists(), final.peers, meta):
            v.meta = group_meta
            for type_, type_instance, values in samples:
                v.type = type_
                v.type_instance = type_instance
                v.values = values
                v.dispatch()
        if self.tracker is not None:
            self._notify([self.tracker.final(final)])

    def _notify(self, found):
        """Dispatch events as collectd notifications; one that cannot go is logged once, never raised."""
        for event in found:
            if event is None:
                continue
            try:
                collectd.Notification(
                    plugin=identifiers.PLUGIN, plugin_instance=event.instance, type=event.type,
                    type_instance=event.type_instance, severity=event.severity, message=event.message[:MAX_MESSAGE],
                    meta=event.meta).dispatch()
            except Exception as e:
                self.collector.warn_once(("notify", event.kind, repr(e)), "%s: %s notification not dispatched: %r"
                                         % (event.instance, event.kind, e), cause=("notify", type(e).__name__))

    def _queue(self, item):
        """The collector's sink: one container's values, dispatched with the next batch."""
        if self.tracker is not None:
            try:
                self.tracker.observe(item)
            except Exception as e:      # a bug: that container's events only
                self.collector.warn_once(("events", repr(e)), "%s: events skipped: %r" % (item.instance, e),
                                         cause=("events", type(e).__name__))
        self._pending.append(item)
        self._pending_values += len(item.samples)
        if self._pending_values >= DISPATCH_BATCH:
            self._flush()

    def _flush(self):
        pending, self._pending, self._pending_values = self._pending, [], 0
        for item in pending:
            try:
                self._dispatch(item)
            except Exception as e:      # costs that container only
                self.collector.warn_once((item.container.key, "dispatch", repr(e)),
                                         "%s: values not dispatched: %r" % (item.container.cgroup, e),
                                         cause=("dispatch", type(e).__name__))

    def _dispatch(self, item):
        """Dispatch one container's values.

        This loop runs once per value (tens of thousands a pass on a big host): each attribute set costs
        collectd a conversion (for ``type`` a types.db lookup too), so only what changed is set."""
        v = self.values
        v.plugin_instance = item.instance
        meta = item.container.meta(self.meta_labels) if self.send_meta else self._empty_meta
        last_type = self._last_type
        try:
            # Interface values carry the host end of their veth pair in their meta (identifiers.meta_groups).
            for group_meta, samples in identifiers.meta_groups(item.samples, item.peers, meta):
                if v.meta is not group_meta:
                    v.meta = group_meta
                for type_, type_instance, values in samples:
                    if type_ is not last_type:
                        v.type = last_type = type_
                    v.type_instance = type_instance
                    v.values = values
                    v.dispatch()
        finally:
            self._last_type = last_type

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
            # The interval decides whether cgroup files are kept open (KeepFilesOpen auto): the
            # configured one, else the time since the last pass (collectd's Interval, unknown to Python;
            # the first pass takes it as long, so it keeps nothing).
            now = _clock()
            interval = self.interval or (now - self._last_pass if self._last_pass is not None else float("inf"))
            if self._last_pass is not None:
                self._seen_interval = round(now - self._last_pass, 3)
            self._last_pass = now
            try:
                found = self.collector.collect(sink=self._queue, interval=interval)
            finally:
                self._flush()
            if self.tracker is not None:
                self.tracker.end_pass()
                self._notify(self.tracker.take())
            if bool(found) != self.had_containers:
                self.had_containers = bool(found)
                collectd.info("%s: %s" % (NAME, "%d container(s) found" % found if found else
                                          "no container found (start one, or run `make demo`)"))
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
    for n, (opts, interval, _) in enumerate(blocks):
        instance = Instance(opts)
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
