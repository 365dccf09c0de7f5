"""Memory: usage, peak, limits, every memory.stat field, OOM events.

Byte figures are GAUGE ``memory-<field>``; event counts from memory.stat
(page faults, page-ins, refaults...) are DERIVE ``vmpage_action-<field>``;
failcnt and the memory.events counters are DERIVE ``derive-memory_<key>``.
A limit that means "no limit" is not dispatched.
"""

import re

from . import formats
from .base import Reader

# The kernel's "no limit" on v1 is LONG_MAX rounded down to a page
# (9223372036854771712 with 4 KiB pages); anything this large is no limit.
UNLIMITED = 1 << 62

# Byte-valued memory.stat fields (v1 and v2, Documentation/admin-guide/cgroup-v1/memory.rst
# and cgroup-v2.rst).
BYTE_FIELDS = frozenset((
    # v1
    "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "swap",
    # both
    "shmem", "swapcached", "inactive_anon", "active_anon", "inactive_file",
    "active_file", "unevictable",
    # v2
    "anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables",
    "percpu", "sock", "vmalloc", "zswap", "zswapped", "file_mapped", "file_dirty",
    "file_writeback", "anon_thp", "file_thp", "shmem_thp", "slab_reclaimable",
    "slab_unreclaimable", "slab", "hugetlb",
))

# Event counters in memory.stat: page faults, page-ins/outs, reclaim and THP
# activity, refaults, NUMA balancing.  New kernels add more of the same families.  The whole key becomes
# a type_instance: only the kernel's characters (lower case, digits, '_'), and not too long.
EVENT_FIELD = re.compile(r"(pg|p?swp|workingset_|thp_|zswp|numa_|hugetlb_)[a-z0-9_]{0,60}\Z")

# memory.stat fields that are not per-cgroup figures; limits are taken elsewhere.
V1_LIMIT_FIELDS = ("hierarchical_memory_limit", "hierarchical_memsw_limit")


def _stat_samples(stat, bad):
    out = []
    for field in sorted(stat):
        if field in BYTE_FIELDS:
            out.append(("memory", field, (stat[field],)))
        elif EVENT_FIELD.match(field):
            out.append(("vmpage_action", field, (stat[field],)))
        else:
            bad.append("unknown memory.stat field %r" % field[:64])
    return out


def _limit(value):
    return value is not None and value < UNLIMITED


def v1_hierarchical_view(stat):
    """A container's processes may sit in sub-cgroups: v1 reports them in the
    ``total_*`` fields.  Use those where present, the local field otherwise."""
    view = {}
    for key, value in stat.items():
        if key.startswith("total_"):
            view[key[6:]] = value
        elif key not in view and key not in V1_LIMIT_FIELDS:
            view[key] = value
    return view


class Memory(Reader):
    group = "memory"
    controller = "memory"
    files_v1 = ("memory.stat", "memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt",
                "memory.oom_control")
    files_v2 = ("memory.stat", "memory.current", "memory.peak", "memory.max", "memory.high",
                "memory.swap.current", "memory.swap.max", "memory.events")
    # memory.stat is not declared (always read): its fields become identifiers of several types.
    yields = {"memory.usage_in_bytes": ("memory-usage", "memory-working_set"),
              "memory.max_usage_in_bytes": ("memory-max_usage",), "memory.failcnt": ("derive-memory_failcnt",),
              "memory.oom_control": ("derive-memory_oom_kill",),
              "memory.current": ("memory-usage", "memory-working_set"), "memory.peak": ("memory-max_usage",),
              "memory.max": ("memory-limit",), "memory.high": ("memory-high",),
              "memory.swap.current": ("memory-swap_usage",), "memory.swap.max": ("memory-swap_limit",),
              "memory.events": ("derive-memory_*",)}
    # v1's limits come with memory.stat (hierarchical_*_limit): nothing more to spare there.
    rare_files = frozenset(("memory.max", "memory.high", "memory.swap.max"))

    def __init__(self):
        # memory.stat has the same keys in every cgroup of a kernel: its parse is planned once per set
        # of keys (formats.FlatPlans), then made by position; anything unusual takes the plain parse.
        self._plans_v1 = formats.FlatPlans(_plan_v1)
        self._plans_v2 = formats.FlatPlans(_plan_v2)

    def parse_v1(self, data, bad):
        raw = data.get("memory.stat")
        if raw is not None:
            planned = self._plans_v1.get(raw)
            if planned is not None:
                return self._planned_v1(data, bad, *planned)
        return self._parse_v1(data, bad)

    @staticmethod
    def _files_v1(data, bad, out, inactive):
        """The single-value files of v1 (and working_set from ``inactive``, inactive_file or None)."""
        usage = data.get("memory.usage_in_bytes")
        if usage is not None:
            usage = formats.single(usage, "memory.usage_in_bytes", bad)
            if usage is not None:
                out.append(("memory", "usage", (usage,)))
                if inactive is not None:
                    out.append(("memory", "working_set", (max(usage - inactive, 0),)))
        peak = data.get("memory.max_usage_in_bytes")
        if peak is not None:
            peak = formats.single(peak, "memory.max_usage_in_bytes", bad)
            if peak is not None:
                out.append(("memory", "max_usage", (peak,)))

    def _planned_v1(self, data, bad, plan, values):
        # values: ints in the int64 range (formats.FlatPlans)
        samples, unknown, inactive, limit, memsw = plan
        out = []
        self._files_v1(data, bad, out, values[inactive] if inactive is not None else None)
        if limit is not None:
            value = values[limit]
            if value < UNLIMITED:
                out.append(("memory", "limit", (value,)))
        if memsw is not None:
            value = values[memsw]
            if value < UNLIMITED:
                out.append(("memory", "memsw_limit", (value,)))
        self._failcnt(data, bad, out)
        out += [(type_, field, (values[i],)) for type_, field, i in samples]
        if unknown:
            bad += unknown
        return out

    @staticmethod
    def _failcnt(data, bad, out):
        failcnt = data.get("memory.failcnt")
        if failcnt is not None:
            failcnt = formats.single(failcnt, "memory.failcnt", bad)
            if failcnt is not None:
                out.append(("derive", "memory_failcnt", (failcnt,)))
        # memory.oom_control: oom_kill_disable, under_oom and (Linux 4.13+) oom_kill, the processes the OOM
        # killer killed in the cgroup: v2's memory.events oom_kill, under the same identifier.
        control = data.get("memory.oom_control")
        if control is not None:
            kills = _OOM_KILLS.get(control)     # nearly every container has the same few contents
            if kills is None:
                kills = formats.flat_keyed(control, bad, "memory.oom_control").get("oom_kill", False)
                if len(_OOM_KILLS) < 1024 and not bad:
                    _OOM_KILLS[control] = kills
            if kills is not False:
                out.append(("derive", "memory_oom_kill", (kills,)))

    def _parse_v1(self, data, bad):
        out = []
        raw = data.get("memory.stat")
        stat = formats.flat_keyed(raw, bad, "memory.stat") if raw is not None else {}
        view = v1_hierarchical_view(stat)
        self._files_v1(data, bad, out, view.get("inactive_file"))
        # The hierarchical limits are the effective ones (the tightest of the
        # cgroup and its ancestors) and come with memory.stat: two files fewer.
        if _limit(stat.get("hierarchical_memory_limit")):
            out.append(("memory", "limit", (stat["hierarchical_memory_limit"],)))
        if _limit(stat.get("hierarchical_memsw_limit")):
            out.append(("memory", "memsw_limit", (stat["hierarchical_memsw_limit"],)))
        self._failcnt(data, bad, out)
        out.extend(_stat_samples(view, bad))
        return out

    def parse_v2(self, data, bad):
        raw = data.get("memory.stat")
        if raw is not None:
            planned = self._plans_v2.get(raw)
            if planned is not None:
                return self._parse_v2(data, bad, planned)
        return self._parse_v2(data, bad)

    def _parse_v2(self, data, bad, planned=None):
        out = []
        raw = data.get("memory.stat")
        if planned is not None:
            # values: ints in the int64 range (formats.FlatPlans)
            (samples, unknown, inactive), values = planned
            inactive = values[inactive] if inactive is not None else None
            stat_out = [(type_, field, (values[i],)) for type_, field, i in samples]
        else:
            stat = formats.flat_keyed(raw, bad, "memory.stat") if raw is not None else {}
            inactive = stat.get("inactive_file")
        current = data.get("memory.current")
        if current is not None:
            current = formats.single(current, "memory.current", bad)
            if current is not None:
                out.append(("memory", "usage", (current,)))
                if inactive is not None:
                    out.append(("memory", "working_set", (max(current - inactive, 0),)))
        for name, instance, parse in _V2_FILES:
            raw_value = data.get(name)
            if raw_value is None:
                continue
            value = parse(raw_value, name, bad)
            if value is not None and (parse is formats.single or value < UNLIMITED):
                out.append(("memory", instance, (value,)))
        events = data.get("memory.events")
        if events is not None:
            for key, value in sorted(formats.flat_keyed(events, bad, "memory.events").items()):
                if key not in _event_keys_seen:
                    if _EVENT_KEY.match(key) is None:
                        bad.append("unknown memory.events key %r" % key[:64])
                        continue
                    if len(_event_keys_seen) < 256:
                        _event_keys_seen.add(key)
                out.append(("derive", "memory_" + key, (value,)))
        if planned is not None:
            out += stat_out
            if unknown:
                bad += unknown
        else:
            out.extend(_stat_samples(stat, bad))
        return out


# memory.oom_control contents already parsed -> their oom_kill count (False: a kernel without one)
_OOM_KILLS = {}

# memory.events keys (low high max oom oom_kill oom_group_kill, and those of later kernels) become
# ``memory_<key>``: the kernel's characters only.
_EVENT_KEY = re.compile(r"[a-z][a-z0-9_]{0,60}\Z")
_event_keys_seen = set()        # keys that matched _EVENT_KEY (a handful per kernel)

# The v2 single-value files besides memory.current: (file, instance, parse).  A count (formats.single)
# or a limit (formats.limit: "max" is no limit, and so is anything from UNLIMITED up).
_V2_FILES = (("memory.peak", "max_usage", formats.single), ("memory.max", "limit", formats.limit),
             ("memory.high", "high", formats.limit), ("memory.swap.current", "swap_usage", formats.single),
             ("memory.swap.max", "swap_limit", formats.limit))


def _template(stat_index):
    """What _stat_samples makes of a memory.stat, with value indexes for values: ([(type, field, index)],
    [what it reports as unknown])."""
    unknown = []
    return [(type_, field, index) for type_, field, (index,) in _stat_samples(stat_index, unknown)], unknown


def _plan_v1(index):
    samples, unknown = _template(v1_hierarchical_view(index))
    view = v1_hierarchical_view(index)
    return (samples, unknown, view.get("inactive_file"), index.get("hierarchical_memory_limit"),
            index.get("hierarchical_memsw_limit"))


def _plan_v2(index):
    samples, unknown = _template(index)
    return samples, unknown, index.get("inactive_file")
