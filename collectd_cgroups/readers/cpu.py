"""CPU time and throttling.

Units: ``cpu-*`` values are hundredths of a CPU-second (a DERIVE whose rate is
percent of one core), whatever the kernel's USER_HZ; throttled time is in
milliseconds (``total_time_in_ms``).
"""

import os

from . import formats
from .base import Reader

try:
    CLK_TCK = os.sysconf("SC_CLK_TCK")
except (ValueError, OSError):  # pragma: no cover - every Linux has it
    CLK_TCK = 100

NS_PER_CENTISECOND = 10 ** 7
USEC_PER_CENTISECOND = 10 ** 4


def _throttling(stat, periods, throttled, throttled_ms):
    out = []
    if periods in stat:
        out.append(("derive", "cpu_periods", (stat[periods],)))
    if throttled in stat:
        out.append(("derive", "cpu_throttled_periods", (stat[throttled],)))
    if throttled_ms is not None:
        out.append(("total_time_in_ms", "cpu_throttled", (throttled_ms,)))
    return out


THROTTLING = ("derive-cpu_periods", "derive-cpu_throttled_periods", "total_time_in_ms-cpu_throttled")


class CpuUsage(Reader):
    """v1: cpuacct.stat (USER_HZ ticks), cpuacct.usage (ns), cpuacct.usage_percpu (ns).
    v2: cpu.stat (usec), which also carries the throttling figures."""

    group = "cpu"
    controller = "cpuacct"
    yields = {"cpuacct.stat": ("cpu-user", "cpu-system"), "cpuacct.usage": ("cpu-total",),
              "cpuacct.usage_percpu": ("cpu-cpu*",),
              "cpu.stat": ("cpu-user", "cpu-system", "cpu-total") + THROTTLING}     # v2

    def __init__(self, per_cpu=False, clk_tck=CLK_TCK):
        self.per_cpu = per_cpu
        self.clk_tck = clk_tck
        self.files_v1 = ("cpuacct.stat", "cpuacct.usage") + (("cpuacct.usage_percpu",) if per_cpu else ())
        self.files_v2 = ("cpu.stat",)

    def parse_v1(self, data, bad):
        out = []
        stat = data.get("cpuacct.stat")
        if stat is not None:
            ticks = formats.flat_keyed(stat, bad, "cpuacct.stat")
            for key in ("user", "system"):
                if key in ticks:
                    value = ticks[key] * 100 // self.clk_tck
                    if value <= formats.INT64_MAX:      # always, with USER_HZ of 100 or more
                        out.append(("cpu", key, (value,)))
                    else:
                        bad.append("cpuacct.stat: %s ticks beyond the int64 range in hundredths" % key)
        usage = data.get("cpuacct.usage")
        if usage is not None:
            usage = formats.single(usage, "cpuacct.usage", bad)
            if usage is not None:
                out.append(("cpu", "total", (usage // NS_PER_CENTISECOND,)))
        percpu = data.get("cpuacct.usage_percpu")
        if percpu is not None:
            for n, ns in enumerate(formats.numbers(percpu)):
                if ns is not None:
                    out.append(("cpu", "cpu%d" % n, (ns // NS_PER_CENTISECOND,)))
                else:
                    bad.append("malformed cpuacct.usage_percpu: CPU %d is not a number" % n)
        return out

    def parse_v2(self, data, bad):
        stat = data.get("cpu.stat")
        if stat is None:
            return []
        stat = formats.flat_keyed(stat, bad, "cpu.stat")
        out = []
        for key, instance in (("user_usec", "user"), ("system_usec", "system"), ("usage_usec", "total")):
            if key in stat:
                out.append(("cpu", instance, (stat[key] // USEC_PER_CENTISECOND,)))
        throttled_ms = stat["throttled_usec"] // 1000 if "throttled_usec" in stat else None
        return out + _throttling(stat, "nr_periods", "nr_throttled", throttled_ms)


class CpuThrottling(Reader):
    """v1 cpu controller's cpu.stat (throttled_time in ns).  On v2 the same
    figures come with CpuUsage's cpu.stat, so nothing is read twice."""

    group = "cpu"
    controller = "cpu"
    files_v1 = ("cpu.stat",)
    yields = {"cpu.stat": THROTTLING}

    def parse_v1(self, data, bad):
        stat = data.get("cpu.stat")
        if stat is None:
            return []
        stat = formats.flat_keyed(stat, bad, "cpu.stat")
        throttled_ms = stat["throttled_time"] // 10 ** 6 if "throttled_time" in stat else None
        return _throttling(stat, "nr_periods", "nr_throttled", throttled_ms)
