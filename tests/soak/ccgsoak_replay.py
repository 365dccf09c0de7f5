"""The soak's reference (``tests/soak/run.py --replay``): collectd with a trivial Python module instead of the
plugin, dispatching what the plugin dispatches for churning containers (the same value lists: 47 per
container, plugin ``container``, instance ``soak-c<n>``, types of the stock types.db), from one reused
``collectd.Values`` as the plugin does, and reading nothing.  ``Containers`` alive at a time, each living a
uniform random time in ``Life`` seconds (seeded), replaced by one with a new name: if collectd's RSS grows
with this module as it does with the plugin, the growth is collectd's (its value cache, its allocator), not
the plugin's.  Lab code; standard library only.
"""

import random
import time

import collectd

CONF = {"containers": 20, "life": (3.0, 12.0), "seed": 1}

# (type, type_instance, number of values): the plugin's value lists for one synthetic container of the lab.
MEMORY = ("cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback", "swap", "active_anon",
          "inactive_anon", "active_file", "inactive_file", "unevictable", "hierarchical_memory_limit",
          "total_cache", "total_rss", "total_rss_huge", "total_shmem", "total_mapped_file", "total_dirty",
          "total_writeback", "total_swap", "total_active_anon", "total_inactive_anon", "total_active_file",
          "total_inactive_file", "total_unevictable")
VALUES = ([("memory", "usage", 1), ("memory", "max_usage", 1)] + [("memory", m, 1) for m in MEMORY] +
          [("cpu", "user", 1), ("cpu", "system", 1), ("cpu", "total", 1),
           ("vmpage_action", "pgfault", 1), ("vmpage_action", "pgmajfault", 1),
           ("disk_octets", "vda", 2), ("disk_ops", "vda", 2),
           ("if_octets", "eth0", 2), ("if_packets", "eth0", 2), ("if_errors", "eth0", 2),
           ("if_dropped", "eth0", 2), ("ps_count", "", 2), ("derive", "memory_failcnt", 1)])
DERIVES = {"cpu", "vmpage_action", "disk_octets", "disk_ops", "if_octets", "if_packets", "if_errors",
           "if_dropped", "derive"}

STATE = {"rng": None, "live": [], "next": 0, "v": None, "n": 0}


def configure(node):
    for child in node.children:
        key = child.key.lower()
        if key == "containers":
            CONF["containers"] = int(child.values[0])
        elif key == "life":
            CONF["life"] = (float(child.values[0]), float(child.values[1]))
        elif key == "seed":
            CONF["seed"] = int(child.values[0])


def _new(now):
    idx = STATE["next"]
    STATE["next"] += 1
    return ["soak-c%06d" % idx, now + STATE["rng"].uniform(*CONF["life"])]


def read(data=None):
    now = time.monotonic()
    if STATE["rng"] is None:
        STATE["rng"] = random.Random(CONF["seed"])
        STATE["live"] = [_new(now) for _ in range(CONF["containers"])]
        STATE["v"] = collectd.Values(plugin="container")
    live = STATE["live"]
    for i, (name, deadline) in enumerate(live):
        if deadline <= now:
            live[i] = _new(now)
    v = STATE["v"]
    STATE["n"] += 1
    n = STATE["n"]
    last_type = None
    for name, _ in live:
        v.plugin_instance = name
        for type_, type_instance, count in VALUES:
            if type_ is not last_type:
                v.type = last_type = type_
            v.type_instance = type_instance
            v.values = [n * 1000] * count if type_ in DERIVES else [12345.0] * count
            v.dispatch()


collectd.register_config(configure, name="ccgsoak_replay")
collectd.register_read(read, name="ccgsoak_replay")
