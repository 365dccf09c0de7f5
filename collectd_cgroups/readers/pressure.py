"""Pressure stall information (cgroup2 ``*.pressure`` files): the ``total``
stall time of each line as a counter in milliseconds, so its rate is the
thousandths of wall time some (or all) tasks were stalled."""

import re

from . import formats
from .base import Reader

RESOURCES = ("cpu", "memory", "io")

# The kernel's own layout (a "some" line, and a "full" line since 5.13 for cpu): parsed with one match.
# A total of 19 digits or more takes the general parse, which checks its range.
_AVGS = rb" avg10=[0-9.]+ avg60=[0-9.]+ avg300=[0-9.]+ total=([0-9]{1,18})\n"
_PLAIN = re.compile(rb"some" + _AVGS + rb"(?:full" + _AVGS + rb")?\Z")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")      # "some", "full": a part of an identifier


class Pressure(Reader):
    group = "pressure"
    controller = "unified"   # always read from the cgroup2 mount, on hybrid hosts too
    files_v2 = tuple(r + ".pressure" for r in RESOURCES)
    yields = dict((r + ".pressure", ("total_time_in_ms-pressure_%s_*" % r,)) for r in RESOURCES)
    unchanged_reuse = True
    _names = dict((r, ("pressure_%s_full" % r, "pressure_%s_some" % r)) for r in RESOURCES)

    def parse_v2(self, data, bad):
        out = []
        for resource in RESOURCES:
            raw = data.get(resource + ".pressure")
            if raw is None:
                continue
            m = _PLAIN.match(raw)
            if m is not None:           # what the general parse below makes of it, sorted: full, some
                some, full = m.groups()
                full_name, some_name = self._names[resource]
                if full is not None:
                    out.append(("total_time_in_ms", full_name, (int(full) // 1000,)))
                out.append(("total_time_in_ms", some_name, (int(some) // 1000,)))
                continue
            for kind, fields in sorted(formats.nested_keyed(raw, bad).items()):
                if _KIND.match(kind) is None:
                    bad.append("%s.pressure: a line of unknown kind %r" % (resource, kind[:32]))
                    continue
                total = fields.get("total")
                value = formats.number(total) if total is not None else None
                if value is None:
                    bad.append("malformed total of %s.pressure's %s line: %s"
                               % (resource, kind, formats.what(total) if total is not None else "none"))
                    continue
                out.append(("total_time_in_ms", "pressure_%s_%s" % (resource, kind), (value // 1000,)))
        return out
