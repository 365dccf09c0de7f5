"""Events of containers, said once at the moment they happen (collectd notifications, ``--events``):

========== ======== ====================================== ===============================================
event      severity type-type_instance                     when
========== ======== ====================================== ===============================================
oom        FAILURE  derive-memory_oom_kill                 the kernel's OOM killer killed processes in the
                                                           container since the last pass (``oom_kill`` of
                                                           v1 memory.oom_control, v2 memory.events)
start      OKAY     uptime-started                         first seen after the first pass (containers
                                                           there at the first pass are seen, not started)
exit       OKAY     uptime-exited                          gone: lifetime, CPU, peak memory, block and
                                                           network bytes, from its final figures
                                                           (CollectOnExit) or from the last pass
memoryhigh WARNING  memory-working_set                     working set (usage where there is none) at or
           / OKAY                                          above ``memory_high`` of the limit; OKAY once
                                                           it is below ``memory_ok`` of it again
throttled  WARNING  derive-cpu_throttled_periods           throttled periods at least ``throttled`` of the
           / OKAY                                          periods of a pass; OKAY once a pass has less
                                                           than half that share, or none (quota lifted)
========== ======== ====================================== ===============================================

The types are collectd's stock ones (a notification's type must be in types.db) and name the value list
the event is about, as collectd's threshold notifications do.  :class:`Tracker` holds what it needs per
container (a few numbers), forgets a container when it has gone, and never raises out of a pass's
figures: a container whose figures it cannot use gets no event.
"""

import time

OKAY, WARNING, FAILURE = 4, 2, 1        # collectd's NOTIF_OKAY, NOTIF_WARNING, NOTIF_FAILURE
SEVERITY_NAMES = {OKAY: "OKAY", WARNING: "WARNING", FAILURE: "FAILURE"}
KINDS = ("oom", "start", "exit", "memoryhigh", "throttled")
DEFAULT_KINDS = ("oom", "memoryhigh", "throttled")
MEMORY_HIGH = 0.9
MEMORY_HYSTERESIS = 0.1     # memoryhigh is OKAY again this far below MEMORY_HIGH (MemoryHighShare)
THROTTLED = 0.25
EXIT_GRACE = 2      # passes an exit waits for its final figures when CollectOnExit is on


class Event(object):
    __slots__ = ("kind", "severity", "instance", "type", "type_instance", "message", "meta", "time")

    def __init__(self, kind, severity, instance, type_, type_instance, message, meta, when):
        self.kind = kind
        self.severity = severity
        self.instance = instance
        self.type = type_
        self.type_instance = type_instance
        self.message = message
        self.meta = meta
        self.time = when

    def to_json(self):
        return {"time": round(self.time, 3), "event": self.kind, "severity": SEVERITY_NAMES[self.severity],
                "plugin_instance": self.instance, "type": self.type, "type_instance": self.type_instance,
                "message": self.message, "meta": self.meta}

    def line(self):
        return "%s %-7s %-10s %s" % (time.strftime("%H:%M:%S", time.localtime(self.time)),
                                    SEVERITY_NAMES[self.severity], self.kind, self.message)


def lifetime_totals(samples):
    """The lifetime totals of a container from its samples (absolute values): CPU seconds, block and
    network bytes, as ``(type, type_instance, (value,))`` (CollectOnExit's final_* values)."""
    by = {}
    net_rx = net_tx = None
    for type_, type_instance, values in samples:
        by[(type_, type_instance)] = values
        if type_ == "if_octets":
            net_rx = (net_rx or 0) + values[0]
            net_tx = (net_tx or 0) + values[1]
    out = []
    cpu = by.get(("cpu", "total"))
    if cpu is not None:
        out.append(("duration", "final_cpu", (cpu[0] / 100.0,)))
    disk = by.get(("disk_octets", "total"))
    if disk is not None:
        out.append(("bytes", "final_disk_read", (disk[0],)))
        out.append(("bytes", "final_disk_write", (disk[1],)))
    if net_rx is not None:
        out.append(("bytes", "final_net_rx", (net_rx,)))
        out.append(("bytes", "final_net_tx", (net_tx,)))
    return out


def _mib(n):
    return "%.1f MiB" % (n / 1048576.0)


def _exit_summary(samples):
    """What an exit says of the container's life, from its samples (those :func:`_for_exit` keeps)."""
    totals = dict((ti, v[0]) for _, ti, v in lifetime_totals(samples))
    peak = next((v[0] for t, ti, v in samples if (t, ti) == ("memory", "max_usage")), None)
    parts = []
    if "final_cpu" in totals:
        parts.append("CPU %.2f s" % totals["final_cpu"])
    if peak is not None:
        parts.append("peak memory %s" % _mib(peak))
    if "final_disk_read" in totals:
        parts.append("block read %d B, written %d B" % (totals["final_disk_read"], totals["final_disk_write"]))
    if "final_net_rx" in totals:
        parts.append("network rx %d B, tx %d B" % (totals["final_net_rx"], totals["final_net_tx"]))
    return ", ".join(parts) or "no figures"


def _for_exit(samples):
    """The samples an exit needs, kept between passes for containers that may go (not a whole pass's)."""
    return [s for s in samples if s[0] == "if_octets" or (s[0], s[1]) in _EXIT_FIGURES]


_EXIT_FIGURES = frozenset((("cpu", "total"), ("memory", "max_usage"), ("disk_octets", "total")))


class _State(object):
    __slots__ = ("first_seen", "started", "oom", "high", "periods", "throttled", "throttling", "item", "gone")

    def __init__(self, first_seen, started, oom):
        self.first_seen = first_seen
        self.started = started      # seen to start (not there at the first pass)
        self.oom = oom              # memory_oom_kill counter at the last pass
        self.high = False           # memoryhigh warned and not yet okay
        self.periods = None         # cpu periods and throttled periods at the last pass
        self.throttled = None
        self.throttling = False     # throttled warned and not yet okay
        self.item = None            # the container's last ContainerSamples, reduced (_for_exit), for its exit
        self.gone = None            # passes since it was last seen (waiting for its final figures)


class Tracker(object):
    """Events from the passes' figures: :meth:`observe` each container of a pass, :meth:`end_pass` after
    it (the exits), :meth:`final` for CollectOnExit's final figures (from another thread).  ``kinds``: the
    events wanted; ``wait_finals``: CollectOnExit is on (an exit waits EXIT_GRACE passes for the final
    figures before it is said from the last pass); ``meta``: container -> the events' meta data."""

    def __init__(self, kinds=DEFAULT_KINDS, memory_high=MEMORY_HIGH, memory_ok=None, throttled=THROTTLED,
                 wait_finals=False, meta=None, clock=time.time):
        self.kinds = frozenset(kinds)
        self.memory_high, self.throttled = memory_high, throttled
        self.memory_ok = memory_ok if memory_ok is not None else memory_high - MEMORY_HYSTERESIS
        self.wait_finals = wait_finals
        self.meta = meta or (lambda container: container.meta(()))
        self.clock = clock
        self.states = {}            # container key -> _State
        self.passes = 0
        self._seen = set()
        self._finals = set()        # keys whose exit CollectOnExit's figures said (any thread adds)
        self.events = []            # made since the last take()

    def take(self):
        out, self.events = self.events, []
        return out

    def observe(self, item):
        """One container's figures in this pass."""
        key = item.container.key
        self._seen.add(key)
        figures = {}
        for type_, type_instance, values in item.samples:
            if type_ in ("derive", "memory") and len(values) == 1:
                figures[(type_, type_instance)] = values[0]
        state = self.states.get(key)
        now = self.clock()
        if state is None:
            started = self.passes > 0
            # A container started after the first pass: its OOM kills count from 0 (all are its own).
            state = self.states[key] = _State(now, started,
                                              0 if started else figures.get(("derive", "memory_oom_kill")))
            if started and "start" in self.kinds:
                info = item.container.info
                image = " from %s" % info.image if info is not None and info.image else ""
                self._emit("start", OKAY, item, "uptime", "started",
                           "%s started (%s %s%s)" % (item.instance, item.container.runtime,
                                                     item.container.cgroup, image))
        if "exit" in self.kinds:
            state.item = item._replace(samples=_for_exit(item.samples))
        state.gone = None
        self._oom(state, item, figures)
        self._memory(state, item, figures)
        self._throttling(state, item, figures)

    def _oom(self, state, item, figures):
        kills = figures.get(("derive", "memory_oom_kill"))
        if kills is None:
            return
        before, state.oom = state.oom, kills
        if before is not None and kills > before and "oom" in self.kinds:
            limit = figures.get(("memory", "limit"))
            self._emit("oom", FAILURE, item, "derive", "memory_oom_kill",
                       "%s: the OOM killer killed %d process%s since the last pass (memory limit %s)"
                       % (item.instance, kills - before, "" if kills - before == 1 else "es",
                          _mib(limit) if limit is not None else "none"))

    def _memory(self, state, item, figures):
        limit = figures.get(("memory", "limit"))
        used = figures.get(("memory", "working_set"), figures.get(("memory", "usage")))
        if not limit or used is None or "memoryhigh" not in self.kinds:
            return
        share = used / float(limit)
        what = "working set" if ("memory", "working_set") in figures else "usage"
        if not state.high and share >= self.memory_high:
            state.high = True
            self._emit("memoryhigh", WARNING, item, "memory", "working_set",
                       "%s: memory %s %s is %.0f%% of its limit %s" % (item.instance, what, _mib(used),
                                                                        100 * share, _mib(limit)))
        elif state.high and share < self.memory_ok:
            state.high = False
            self._emit("memoryhigh", OKAY, item, "memory", "working_set",
                       "%s: memory %s %s is back to %.0f%% of its limit %s" % (item.instance, what, _mib(used),
                                                                                100 * share, _mib(limit)))

    def _throttling(self, state, item, figures):
        periods = figures.get(("derive", "cpu_periods"))
        throttled = figures.get(("derive", "cpu_throttled_periods"))
        before_p, before_t = state.periods, state.throttled
        state.periods, state.throttled = periods, throttled
        if periods is None or throttled is None or before_p is None or before_t is None \
                or "throttled" not in self.kinds:
            return
        d_periods, d_throttled = periods - before_p, throttled - before_t
        if d_periods == 0 and d_throttled == 0 and state.throttling:
            state.throttling = False        # the quota was lifted: no periods are counted any more
            self._emit("throttled", OKAY, item, "derive", "cpu_throttled_periods",
                       "%s: CPU no longer throttled (no quota periods since the last pass)" % item.instance)
            return
        if d_periods <= 0 or d_throttled < 0:
            return      # no quota periods in this pass (or counters reset): nothing to judge
        share = d_throttled / float(d_periods)
        if not state.throttling and share >= self.throttled:
            state.throttling = True
            self._emit("throttled", WARNING, item, "derive", "cpu_throttled_periods",
                       "%s: CPU throttled in %d of %d periods (%.0f%%) since the last pass"
                       % (item.instance, d_throttled, d_periods, 100 * share))
        elif state.throttling and share < self.throttled / 2:
            state.throttling = False
            self._emit("throttled", OKAY, item, "derive", "cpu_throttled_periods",
                       "%s: CPU throttled in %d of %d periods (%.0f%%) since the last pass: no longer"
                       % (item.instance, d_throttled, d_periods, 100 * share))

    def end_pass(self):
        """After a pass: the containers gone (their exit, or a wait for their final figures)."""
        seen, self._seen = self._seen, set()
        self.passes += 1
        for key in [k for k in self.states if k not in seen]:
            state = self.states[key]
            if key in self._finals:             # said from its final figures
                self._finals.discard(key)
                del self.states[key]
                continue
            state.gone = (state.gone or 0) + 1
            if self.wait_finals and state.gone <= EXIT_GRACE:
                continue
            del self.states[key]
            if "exit" in self.kinds and state.item is not None:
                self.events.append(self._exit(state.item, state.item.samples, state, "the last pass"))
        self._finals.intersection_update(self.states)

    def final(self, final):
        """CollectOnExit's final figures of a container (on the exit watcher's thread): its exit event,
        said from them, or None."""
        key = final.container.key
        self._finals.add(key)
        if "exit" not in self.kinds:
            return None
        return self._exit(final, final.samples, self.states.get(key), "its final figures")

    def _exit(self, item, samples, state, source):
        summary = _exit_summary(samples)
        if state is None:
            life = "lifetime unknown"
        else:
            life = "%s %.0f s" % ("lived" if state.started else "seen for", self.clock() - state.first_seen)
        return self._event("exit", OKAY, item, "uptime", "exited",
                           "%s exited (%s; %s; from %s)" % (item.instance, life, summary, source))

    def _emit(self, kind, severity, item, type_, type_instance, message):
        self.events.append(self._event(kind, severity, item, type_, type_instance, message))

    def _event(self, kind, severity, item, type_, type_instance, message):
        try:
            meta = dict(self.meta(item.container))
        except Exception:       # meta data are a courtesy: never a reason to lose the event
            meta = {}
        meta["event"] = kind
        return Event(kind, severity, item.instance, type_, type_instance, message, meta, self.clock())
