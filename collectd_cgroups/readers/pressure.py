"""Pressure stall information (cgroup2 ``*.pressure`` files): the ``total``
stall time of each line as a counter in milliseconds, so its rate is the
thousandths of wall time some (or all) tasks were stalled."""

from . import formats

RESOURCES = ("cpu", "memory", "io")


class Pressure(object):
    group = "pressure"
    controller = "unified"   # always read from the cgroup2 mount, on hybrid hosts too
    files_v1 = ()
    files_v2 = tuple(r + ".pressure" for r in RESOURCES)

    def parse_v1(self, data, bad):
        return []

    def parse_v2(self, data, bad):
        out = []
        for resource in RESOURCES:
            raw = data.get(resource + ".pressure")
            if raw is None:
                continue
            for kind, fields in sorted(formats.nested_keyed(raw, bad).items()):
                total = fields.get("total")
                if total is None or not total.isdigit():
                    bad.append(raw)
                    continue
                out.append(("total_time_in_ms", "pressure_%s_%s" % (resource, kind), (int(total) // 1000,)))
        return out
