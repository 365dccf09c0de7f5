"""Memory: usage, peak, limits, every memory.stat field, OOM events.

Byte figures are GAUGE ``memory-<field>``; event counts from memory.stat
(page faults, page-ins, refaults...) are DERIVE ``vmpage_action-<field>``;
failcnt and the memory.events counters are DERIVE ``derive-memory_<key>``.
A limit that means "no limit" is not dispatched.
"""

import re

from . import formats

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
# activity, refaults, NUMA balancing.  New kernels add more of the same families.
EVENT_FIELD = re.compile(r"^(pg|p?swp|workingset_|thp_|zswp|numa_|hugetlb_)")

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
            bad.append("unknown memory.stat field %r" % field)
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


class Memory(object):
    group = "memory"
    controller = "memory"
    files_v1 = ("memory.stat", "memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt")
    files_v2 = ("memory.stat", "memory.current", "memory.peak", "memory.max", "memory.high",
                "memory.swap.current", "memory.swap.max", "memory.events")

    def parse_v1(self, data, bad):
        out = []
        raw = data.get("memory.stat")
        stat = formats.flat_keyed(raw, bad) if raw is not None else {}
        view = v1_hierarchical_view(stat)
        usage = data.get("memory.usage_in_bytes")
        if usage is not None:
            usage = formats.single_value(usage)
            out.append(("memory", "usage", (usage,)))
            if "inactive_file" in view:
                out.append(("memory", "working_set", (max(usage - view["inactive_file"], 0),)))
        peak = data.get("memory.max_usage_in_bytes")
        if peak is not None:
            out.append(("memory", "max_usage", (formats.single_value(peak),)))
        # The hierarchical limits are the effective ones (the tightest of the
        # cgroup and its ancestors) and come with memory.stat: two files fewer.
        if _limit(stat.get("hierarchical_memory_limit")):
            out.append(("memory", "limit", (stat["hierarchical_memory_limit"],)))
        if _limit(stat.get("hierarchical_memsw_limit")):
            out.append(("memory", "memsw_limit", (stat["hierarchical_memsw_limit"],)))
        failcnt = data.get("memory.failcnt")
        if failcnt is not None:
            out.append(("derive", "memory_failcnt", (formats.single_value(failcnt),)))
        out.extend(_stat_samples(view, bad))
        return out

    def parse_v2(self, data, bad):
        out = []
        raw = data.get("memory.stat")
        stat = formats.flat_keyed(raw, bad) if raw is not None else {}
        current = data.get("memory.current")
        if current is not None:
            current = formats.single_value(current)
            out.append(("memory", "usage", (current,)))
            if "inactive_file" in stat:
                out.append(("memory", "working_set", (max(current - stat["inactive_file"], 0),)))
        for name, instance in (("memory.peak", "max_usage"), ("memory.max", "limit"),
                               ("memory.high", "high"), ("memory.swap.current", "swap_usage"),
                               ("memory.swap.max", "swap_limit")):
            raw_value = data.get(name)
            if raw_value is None:
                continue
            value = formats.single_value(raw_value)
            if value is not None and (instance in ("max_usage", "swap_usage") or _limit(value)):
                out.append(("memory", instance, (value,)))
        events = data.get("memory.events")
        if events is not None:
            for key, value in sorted(formats.flat_keyed(events, bad).items()):
                out.append(("derive", "memory_" + key, (value,)))
        out.extend(_stat_samples(stat, bad))
        return out
