"""readers.formats: the kernel's cgroup file formats (cgroup-v2.rst, "Interface Files"),
plus the unit conversions the readers build on them."""

import pytest

from collectd_cgroups.readers import formats
from collectd_cgroups.readers.cpu import CpuThrottling, CpuUsage
from collectd_cgroups.readers.pressure import Pressure


# -- flat keyed: "KEY VALUE" lines ----------------------------------------------

def test_flat_keyed_real_cpu_stat():
    data = (b"usage_usec 96030397\nuser_usec 50879121\nsystem_usec 45151275\nnice_usec 0\n"
            b"core_sched.force_idle_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
            b"nr_bursts 0\nburst_usec 0\n")
    bad = []
    got = formats.flat_keyed(data, bad)
    assert got["usage_usec"] == 96030397 and got["core_sched.force_idle_usec"] == 0
    assert len(got) == 10 and bad == []


def test_flat_keyed_skips_bad_lines_and_keeps_the_rest():
    data = (b"cache 4206592\n"
            b"rss\n"                       # truncated: no value
            b"rss_huge 12 34\n"            # three fields
            b"shmem x12\n"                 # not a number
            b"\xff\xfe 5\n"                # not ASCII
            b"mapped_file 0\n"
            b"total_rss 2972")             # last line without newline still counts
    bad = []
    got = formats.flat_keyed(data, bad)
    assert got == {"cache": 4206592, "mapped_file": 0, "total_rss": 2972}
    assert bad == [b"rss", b"rss_huge 12 34", "malformed value of shmem: not a number: b'x12'", b"\xff\xfe 5"]
    bad = []
    formats.flat_keyed(b"shmem x12\n", bad, "memory.stat")
    assert bad == ["malformed value of shmem in memory.stat: not a number: b'x12'"]


def test_flat_keyed_without_bad_list_and_empty():
    assert formats.flat_keyed(b"a 1\nb\n") == {"a": 1}
    assert formats.flat_keyed(b"") == {}
    assert formats.flat_keyed(b"\n\n") == {}


def test_flat_keyed_tolerates_crlf_and_extra_spaces():
    assert formats.flat_keyed(b"user 16\r\nsystem  47\n") == {"user": 16, "system": 47}


def test_flat_keyed_large_values_and_what_is_not_a_count():
    bad = []
    got = formats.flat_keyed(b"hierarchical_memory_limit 9223372036854771712\nx -1\nmax 9223372036854775807\n"
                             b"over 9223372036854775808\nhuge %d\nu 1_000\np +5\na \xd9\xa1\xd9\xa2\n" % 2 ** 70,
                             bad)
    assert got == {"hierarchical_memory_limit": 9223372036854771712, "max": 2 ** 63 - 1}
    assert bad == ["malformed value of x: a signed number where the kernel writes a count",
                   "malformed value of over: a 19-digit number, beyond the int64 range",
                   "malformed value of huge: a 22-digit number, beyond the int64 range",
                   "malformed value of u: not a number: b'1_000'",
                   "malformed value of p: a signed number where the kernel writes a count",
                   "malformed value of a: not a number: b'\\xd9\\xa1\\xd9\\xa2'"]


@pytest.mark.parametrize("data, value", [
    (b"0\n", 0), (b"9223372036854775807\n", 2 ** 63 - 1), (b"000000000000000000000000042\n", 42)])
def test_single_in_range(data, value):
    bad = []
    assert formats.single(data, "f", bad) == value and bad == []
    assert formats.limit(data, "f", bad) == value and bad == []


@pytest.mark.parametrize("data, why", [
    (b"max\n", "not a number: b'max'"), (b"", "empty"), (b" \n\t", "empty"),
    (b"-1\n", "a signed number where the kernel writes a count"),
    (b"9223372036854775808\n", "a 19-digit number, beyond the int64 range"),
    (str(2 ** 70).encode(), "a 22-digit number, beyond the int64 range"),
    ("١٢٣\n".encode(), "not a number: b'\\xd9\\xa1\\xd9\\xa2\\xd9\\xa3'"),
    (b"1_000", "not a number: b'1_000'"), (b"1 2\n", "not a number: b'1 2'"),
])
def test_single_not_a_number_is_a_bad_field(data, why):
    bad = []
    assert formats.single(data, "memory.current", bad) is None
    assert bad == ["malformed memory.current: " + why]
    bad = []
    assert formats.limit(data, "memory.max", bad) is None
    assert bad == (["malformed memory.max: " + why] if data.strip() != b"max" else [])


# -- single values --------------------------------------------------------------

@pytest.mark.parametrize("data, value", [
    (b"34111488\n", 34111488), (b"0\n", 0), (b" 7 \n", 7), (b"42", 42),
    (b"max\n", None), (b"max", None),
    (b"9223372036854771712\n", 9223372036854771712),
])
def test_single_value(data, value):
    assert formats.single_value(data) == value


@pytest.mark.parametrize("data", [b"", b"\n", b"garbage\n", b"1 2\n", b"MAX\n", b"12abc\n", b"-1\n",
                                  b"9223372036854775808\n", "١\n".encode(), b"1_0"])
def test_single_value_malformed_raises_value_error(data):
    with pytest.raises(ValueError):
        formats.single_value(data)


# -- lists ------------------------------------------------------------------------

def test_int_list_real_usage_percpu():
    # the kernel prints "%llu " per CPU and a newline
    assert formats.int_list(b"0 646227464 \n") == [0, 646227464]
    assert formats.int_list(b"\n") == []


def test_int_list_malformed():
    with pytest.raises(ValueError):
        formats.int_list(b"1 two 3\n")


# -- nested keyed: "NAME KEY=VALUE ..." -------------------------------------------

PRESSURE = (b"some avg10=0.12 avg60=0.08 avg300=0.02 total=1935262\n"
            b"full avg10=0.00 avg60=0.00 avg300=0.00 total=1402118\n")


def test_nested_keyed_pressure():
    bad = []
    got = formats.nested_keyed(PRESSURE, bad)
    assert got == {"some": {"avg10": "0.12", "avg60": "0.08", "avg300": "0.02", "total": "1935262"},
                   "full": {"avg10": "0.00", "avg60": "0.00", "avg300": "0.00", "total": "1402118"}}
    assert bad == []


def test_nested_keyed_io_max_style_values():
    got = formats.nested_keyed(b"8:16 rbps=2097152 wbps=max riops=max wiops=120\n")
    assert got == {"8:16": {"rbps": "2097152", "wbps": "max", "riops": "max", "wiops": "120"}}


def test_nested_keyed_value_with_equals_sign_keeps_the_rest():
    assert formats.nested_keyed(b"x a=b=c\n") == {"x": {"a": "b=c"}}


def test_nested_keyed_bad_lines():
    bad = []
    got = formats.nested_keyed(b"some avg10=0.00 total\nfull total=5\n\xff k=v\n", bad)
    assert got == {"full": {"total": "5"}}
    assert bad == [b"some avg10=0.00 total", b"\xff k=v"]


def test_nested_keyed_name_alone():
    assert formats.nested_keyed(b"some\n") == {"some": {}}


# -- unit conversions built on the formats ---------------------------------------

@pytest.mark.parametrize("clk_tck", [100, 250, 1000, 1024])
def test_cpuacct_stat_ticks_to_hundredths_whatever_user_hz(clk_tck):
    r = CpuUsage(clk_tck=clk_tck)
    out = r.parse_v1({"cpuacct.stat": b"user 61234\nsystem 5120\n"}, [])
    assert out == [("cpu", "user", (61234 * 100 // clk_tck,)),
                   ("cpu", "system", (5120 * 100 // clk_tck,))]


def test_cpuacct_usage_ns_to_hundredths_and_per_cpu():
    r = CpuUsage(per_cpu=True, clk_tck=100)
    assert "cpuacct.usage_percpu" in r.files_v1
    out = dict(((t, ti), v[0]) for t, ti, v in r.parse_v1(
        {"cpuacct.usage": b"646227464\n", "cpuacct.usage_percpu": b"0 646227464 \n"}, []))
    assert out == {("cpu", "total"): 64, ("cpu", "cpu0"): 0, ("cpu", "cpu1"): 64}
    assert all(isinstance(v, int) for v in out.values())


def test_v2_cpu_stat_usec_to_hundredths_and_throttled_ms():
    bad = []
    out = dict(((t, ti), v[0]) for t, ti, v in CpuUsage().parse_v2({"cpu.stat": (
        b"usage_usec 8234567\nuser_usec 6100000\nsystem_usec 2134567\nnice_usec 0\n"
        b"nr_periods 5012\nnr_throttled 37\nthrottled_usec 1850321\n")}, bad))
    assert out == {("cpu", "user"): 610, ("cpu", "system"): 213, ("cpu", "total"): 823,
                   ("derive", "cpu_periods"): 5012, ("derive", "cpu_throttled_periods"): 37,
                   ("total_time_in_ms", "cpu_throttled"): 1850}
    assert bad == []


def test_v1_cpu_stat_throttled_ns_to_ms():
    out = CpuThrottling().parse_v1({"cpu.stat": b"nr_periods 15\nnr_throttled 12\n"
                                                b"throttled_time 571318632\nnr_bursts 0\nburst_time 0\n"}, [])
    assert out == [("derive", "cpu_periods", (15,)), ("derive", "cpu_throttled_periods", (12,)),
                   ("total_time_in_ms", "cpu_throttled", (571,))]


def test_pressure_total_usec_to_ms_and_bad_line():
    bad = []
    out = Pressure().parse_v2({"cpu.pressure": PRESSURE,
                               "io.pressure": b"some avg10=0.00 avg60=0.00 avg300=0.00 total=2587\n"
                                              b"full avg10=0.00 total=oops\n"}, bad)
    assert ("total_time_in_ms", "pressure_cpu_some", (1935,)) in out
    assert ("total_time_in_ms", "pressure_cpu_full", (1402,)) in out
    assert ("total_time_in_ms", "pressure_io_some", (2,)) in out
    assert not any(ti == "pressure_io_full" for _, ti, _ in out)
    assert len(bad) == 1


def test_real_memory_stat_files_take_the_planned_path():
    """v1's memory.stat carries the kernel's 19-digit "no limit" (9223372036854771712): still the fast path."""
    import glob
    import os
    from tests.support import FIXTURES
    paths = glob.glob(os.path.join(FIXTURES, "hybrid-debian12/sys/fs/cgroup/memory/docker/*/memory.stat")) \
        + glob.glob(os.path.join(FIXTURES, "v2-guest-captured/sys/fs/cgroup/system.slice/*/memory.stat"))
    assert len(paths) >= 2
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        assert formats.FlatPlans(lambda index: index).get(data) is not None, path
    assert formats.flat_split(b"a 9223372036854775807\n") is not None
    assert formats.flat_split(b"a 9223372036854775808\n") is None
    assert formats.flat_split(b"a 1\nb \n") is None             # an empty value
