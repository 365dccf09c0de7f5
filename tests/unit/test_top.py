"""collectd_cgroups.top's pure parts: figures from two passes, sorting, filtering, the text of a screen."""

import collections

import pytest

from collectd_cgroups import top
from collectd_cgroups.collector import ContainerSamples

Info = collections.namedtuple("Info", "pod namespace")
FakeContainer = collections.namedtuple("FakeContainer", "key cgroup runtime info")


def item(name, cpu=0, mem=0, limit=None, periods=None, throttled=None, net=None, disk=None, pids=1, psi=None,
         working_set=None, pod=None, namespace=None, runtime="cgroup"):
    """A ContainerSamples as collector.collect() gives it (cpu in 1/100 s, psi total in ms)."""
    samples = [("cpu", "total", (cpu,)), ("cpu", "user", (cpu,)), ("memory", "usage", (mem,)),
               ("count", "pids", (pids,))]
    if limit is not None:
        samples.append(("memory", "limit", (limit,)))
    if working_set is not None:
        samples.append(("memory", "working_set", (working_set,)))
    if periods is not None:
        samples += [("derive", "cpu_periods", (periods,)), ("derive", "cpu_throttled_periods", (throttled,))]
    for i, (rx, tx) in enumerate(net or ()):
        samples += [("if_octets", "eth%d" % i, (rx, tx)), ("if_packets", "eth%d" % i, (1, 1))]
    if disk is not None:
        samples += [("disk_octets", "8:0", disk), ("disk_octets", "total", disk)]
    if psi is not None:
        samples += [("total_time_in_ms", "pressure_memory_some", (psi,)),
                    ("total_time_in_ms", "pressure_memory_full", (psi // 2,))]
    c = FakeContainer(("cgroup", name), "/x/" + name, runtime, Info(pod, namespace))
    return ContainerSamples(c, "%s-%s" % (runtime, name), samples)


def snaps(*items):
    return collections.OrderedDict((i.container.key, top.snapshot(i)) for i in items)


def by_name(rows):
    return {r.name: r for r in rows}


# -- rates -----------------------------------------------------------------------------------------------------

def test_rate_is_the_difference_over_the_seconds():
    assert top.rate(100, 350, 2.5) == 100.0
    assert top.rate(7, 7, 1.0) == 0.0


@pytest.mark.parametrize("before,after,seconds", [(None, 5, 1), (5, None, 1), (5, 6, 0), (5, 6, -1), (9, 3, 1)])
def test_rate_unknown_never_negative(before, after, seconds):
    assert top.rate(before, after, seconds) is None


def test_snapshot_sums_interfaces_and_takes_the_disk_total():
    s = top.snapshot(item("a", net=[(10, 20), (1, 2)], disk=(300, 400), pod="p", namespace="ns"))
    assert s.figures["net_rx"] == 11 and s.figures["net_tx"] == 22
    assert (s.figures["blk_read"], s.figures["blk_write"]) == (300, 400)    # total only, not per device too
    assert s.pod == "ns/p" and s.name == "cgroup-a" and s.runtime == "cgroup"
    assert "net_rx" not in top.snapshot(item("b")).figures                  # no interface: no figure


def test_row_from_two_passes_like_docker_stats():
    before = snaps(item("a", cpu=1000, periods=100, throttled=10, net=[(0, 0)], disk=(0, 0), psi=0))
    after = snaps(item("a", cpu=1100, mem=50 << 20, limit=200 << 20, periods=120, throttled=15,
                       net=[(4000, 2000)], disk=(8192, 0), pids=4, psi=300, working_set=40 << 20))
    row, = top.rows_between(before, after, 2.0)
    assert row.mark == ""
    assert row.cpu == 50.0                  # 100/100 CPU-second over 2 s: half a core
    assert row.throttled == 25.0            # 5 of 20 periods
    assert row.mem_pct == 25.0 and row.mem == 50 << 20 and row.limit == 200 << 20
    assert row.working_set == 40 << 20
    assert (row.net_rx, row.net_tx, row.blk_read, row.blk_write) == (2000.0, 1000.0, 4096.0, 0.0)
    assert row.pids == 4
    assert row.mem_psi == 15.0              # 300 ms stalled in 2000 ms


def test_no_quota_no_throttled_share_no_limit_no_percent():
    before = snaps(item("a", cpu=0, periods=0, throttled=0))
    after = snaps(item("a", cpu=10, periods=0, throttled=0))
    row, = top.rows_between(before, after, 1.0)
    assert row.throttled is None and row.mem_pct is None and row.limit is None
    assert row.cpu == 10.0


def test_restarted_container_counters_back_gives_no_rate_not_a_negative_one():
    before = snaps(item("a", cpu=5000, net=[(10 ** 6, 10 ** 6)], disk=(10 ** 6, 10 ** 6), periods=500,
                        throttled=100, psi=9000))
    after = snaps(item("a", cpu=20, net=[(100, 100)], disk=(0, 0), periods=3, throttled=1, psi=1))
    row, = top.rows_between(before, after, 1.0)
    for field in ("cpu", "throttled", "net_rx", "net_tx", "blk_read", "blk_write", "mem_psi"):
        assert getattr(row, field) is None, field
    totals = top.host_totals([row])
    assert totals.cpu == 0 and totals.net_rx == 0


def test_new_and_gone_containers_are_marked_for_one_refresh():
    p1 = snaps(item("a", cpu=0), item("old", cpu=0, mem=7))
    p2 = snaps(item("a", cpu=100), item("fresh", cpu=50, mem=3))
    rows = by_name(top.rows_between(p1, p2, 1.0))
    assert rows["cgroup-a"].mark == "" and rows["cgroup-a"].cpu == 100.0
    assert rows["cgroup-fresh"].mark == top.NEW and rows["cgroup-fresh"].cpu is None
    assert rows["cgroup-old"].mark == top.GONE and rows["cgroup-old"].mem == 7 and rows["cgroup-old"].cpu is None
    p3 = snaps(item("a", cpu=200), item("fresh", cpu=150, mem=3))
    rows = by_name(top.rows_between(p2, p3, 1.0))
    assert set(rows) == {"cgroup-a", "cgroup-fresh"} and rows["cgroup-fresh"].mark == ""
    assert rows["cgroup-fresh"].cpu == 100.0


def test_first_pass_marks_nothing_and_has_no_rates():
    rows = top.rows_between(None, snaps(item("a", cpu=10)), 0.0)
    assert [(r.mark, r.cpu) for r in rows] == [("", None)]


def test_host_totals_sum_live_containers_only():
    p1 = snaps(item("a", cpu=0, net=[(0, 0)]), item("b", cpu=0, disk=(0, 0)), item("gone", cpu=0, mem=10 ** 9))
    p2 = snaps(item("a", cpu=50, mem=100, net=[(1000, 500)]), item("b", cpu=25, mem=50, disk=(2000, 4000)),
               item("new", cpu=999, mem=1))
    t = top.host_totals(top.rows_between(p1, p2, 1.0))
    assert (t.containers, t.new, t.gone) == (3, 1, 1)
    assert t.cpu == 75.0 and t.mem == 151
    assert (t.net_rx, t.net_tx, t.blk_read, t.blk_write) == (1000, 500, 2000, 4000)


# -- sorting and filtering ---------------------------------------------------------------------------------

def _rows():
    p1 = snaps(item("busy", cpu=0, net=[(0, 0)], disk=(0, 0)), item("fat", cpu=0, disk=(0, 0)),
               item("chatty", cpu=0, net=[(0, 0)]), item("quiet", cpu=0))
    p2 = snaps(item("busy", cpu=90, mem=10, net=[(10, 10)], disk=(5, 5)),
               item("fat", cpu=10, mem=900, disk=(4000, 0)),
               item("chatty", cpu=20, mem=20, net=[(10 ** 6, 10)]), item("quiet", cpu=0, mem=5))
    return top.rows_between(p1, p2, 1.0)


@pytest.mark.parametrize("order,expected", [
    ("cpu", ["busy", "chatty", "fat", "quiet"]),
    ("mem", ["fat", "chatty", "busy", "quiet"]),
    ("net", ["chatty", "busy", "fat", "quiet"]),        # no interface at all: last, by name
    ("io", ["fat", "busy", "chatty", "quiet"]),
    ("name", ["busy", "chatty", "fat", "quiet"]),
])
def test_sort_orders(order, expected):
    assert [r.name[7:] for r in top.sort_rows(_rows(), order)] == expected


def test_sort_reverse_and_filter():
    assert [r.name[7:] for r in top.sort_rows(_rows(), "cpu", reverse=True)] == ["quiet", "fat", "chatty", "busy"]
    assert [r.name for r in top.filter_rows(_rows(), "AT")] == ["cgroup-fat", "cgroup-chatty"]
    assert len(top.filter_rows(_rows(), "")) == 4


def test_view_keys():
    v = top.View(2.0)
    for ch, order in (("m", "mem"), ("n", "net"), ("i", "io"), ("a", "name"), ("c", "cpu")):
        assert v.key(ch) and v.order == order
    assert v.key("r") and v.reverse
    for ch in "/fa\x7ft\n":
        assert v.key(ch)
    assert v.filter_text == "ft" and v.editing is None
    v.key("/"), v.key("x"), v.key("\x1b")          # Esc while typing: the old filter stays
    assert v.filter_text == "ft" and v.editing is None
    v.key("\x1b")                                   # Esc: no filter
    assert v.filter_text == ""
    v.key("/"), v.key("q")                          # q while typing is text, not quit
    assert v.editing == "q"
    v.key("\n")
    assert v.key("q") is False


# -- text ----------------------------------------------------------------------------------------------------

def test_human_bytes_at_most_eight_characters():
    assert top.human_bytes(None) == "-"
    assert top.human_bytes(999) == "999B"
    assert top.human_bytes(1000) == "1.0KiB"
    assert top.human_bytes(1536 << 10) == "1.5MiB"
    for n in (0, 999, 1000, 1023999, 10 ** 9, 10 ** 12, 10 ** 18, 10 ** 21):
        assert len(top.human_bytes(n)) <= 8, n


def test_plain_table_has_every_column_and_a_row_per_container():
    lines = top.table_lines(_rows())
    titles = lines[0].split()
    assert titles == ["NAME", "RUNTIME", "CPU%", "THR%", "MEM/LIMIT", "MEM%", "WSET", "NETRX/s", "NETTX/s",
                      "BLKR/s", "BLKW/s", "PIDS", "PSI%"]
    assert len(lines) == 5
    busy = [l for l in lines if "cgroup-busy" in l][0].split()
    assert busy[:4] == ["cgroup-busy", "cgroup", "90.0", "-"] and busy[4] == "10B/-"


def test_pod_column_only_when_known():
    assert "POD" not in top.table_lines(_rows())[0]
    p = snaps(item("k", pod="web-1", namespace="shop", runtime="k8s"))
    lines = top.table_lines(top.rows_between(None, p, 0))
    assert "POD" in lines[0] and "shop/web-1" in lines[1]


@pytest.mark.parametrize("width", [200, 120, 80, 60, 40, 20, 8, 1])
def test_narrow_tables_drop_columns_by_priority_and_fit(width):
    rows = _rows() + top.rows_between(None, snaps(item("a-rather-long-container-name-" * 2)), 0)
    lines = top.table_lines(rows, width)
    assert all(len(l) <= width for l in lines)
    titles = lines[0].split()
    # what goes first: PSI%, THR%, WSET, RUNTIME, then pids, block, network (the rightmost of a pair first),
    # memory; NAME and CPU% stay
    order = ["PSI%", "THR%", "WSET", "RUNTIME", "PIDS", "BLKW/s", "BLKR/s", "NETTX/s", "NETRX/s", "MEM%",
             "MEM/LIMIT"]
    dropped = [t for t in order if t not in titles]
    assert dropped == order[:len(dropped)]
    if width >= 80:
        assert ["NAME", "CPU%", "MEM/LIMIT", "MEM%", "NETRX/s", "NETTX/s"] == [t for t in titles if t in (
            "NAME", "CPU%", "MEM/LIMIT", "MEM%", "NETRX/s", "NETTX/s")]


@pytest.mark.parametrize("size", [(120, 40), (80, 24), (40, 10), (20, 5), (10, 3), (5, 2), (1, 1), (0, 0)])
def test_screen_fits_any_terminal(size):
    width, height = size
    v = top.View(2.0)
    v.rows = _rows() * 10
    lines = top.screen_lines(v, width, height, clock="12:00:00")
    assert len(lines) <= max(0, height)
    assert all(len(l) <= max(0, width - 1) for l in lines)
    if height >= 24:
        assert lines[0].startswith("collectd-cgroups top - 12:00:00") and lines[-1].startswith("c CPU*")
        assert "NAME" in lines[3]


def test_screen_header_footer_and_filter_prompt():
    v = top.View(1.5, order="mem")
    v.rows = _rows()
    lines = top.screen_lines(v, 100, 30, clock="12:00:00")
    assert "every 1.5s" in lines[0] and "containers: 4" in lines[0]
    assert lines[1].startswith("CPU 120.0%  MEM 935B")
    assert "m MEM*" in lines[-1] and "c CPU*" not in lines[-1]
    assert [l.split()[0] for l in lines[4:8]] == ["cgroup-fat", "cgroup-chatty", "cgroup-busy", "cgroup-quiet"]
    v.key("/"), v.key("b"), v.key("u")
    assert top.screen_lines(v, 100, 30)[-1] == "/bu"
    v.key("\n")
    lines = top.screen_lines(v, 100, 30)
    assert "[bu]" in lines[-1] and lines[4].split()[0] == "cgroup-busy" and not lines[5].strip()


class FakeCollector(object):
    def __init__(self, passes):
        self.passes = list(passes)

    def collect(self, interval=None):
        return self.passes.pop(0)


def test_sampler_rates_over_its_clock():
    times = iter([10.0, 12.0, 13.0])
    s = top.Sampler(FakeCollector([[item("a", cpu=0)], [item("a", cpu=100)], [item("a", cpu=50)]]),
                    clock=lambda: next(times))
    assert [r.cpu for r in s.step()] == [None]
    assert [r.cpu for r in s.step()] == [50.0]
    assert [r.cpu for r in s.step()] == [None]      # the counter went back: a restart, no rate
