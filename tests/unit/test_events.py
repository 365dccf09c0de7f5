"""events.Tracker: each event once, at the pass it happens, from the figures a pass gives (the plugin's
samples of a container), with hysteresis where a condition can come and go."""

from collectd_cgroups import events
from collectd_cgroups.collector import ContainerSamples
from collectd_cgroups.containers import Container

MiB = 1 << 20


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def item(name, **figures):
    """A ContainerSamples of container ``name`` with the figures given (memory in MiB)."""
    samples = []
    for key, type_, ti in (("oom", "derive", "memory_oom_kill"), ("periods", "derive", "cpu_periods"),
                           ("throttled", "derive", "cpu_throttled_periods"), ("cpu", "cpu", "total")):
        if key in figures:
            samples.append((type_, ti, (figures[key],)))
    for key in ("usage", "working_set", "limit", "max_usage"):
        if key in figures:
            samples.append(("memory", key, (figures[key] * MiB,)))
    if "disk" in figures:
        samples.append(("disk_octets", "total", figures["disk"]))
    if "net" in figures:
        samples.append(("if_octets", "eth0", figures["net"]))
    c = Container("cgroup", "/t/" + name, name, "/t/" + name, 1)
    return ContainerSamples(c, "cgroup-" + name, samples)


def run(tracker, *items, whole=False):
    """One pass over ``items``: its events as (kind, severity, instance), or with ``whole`` the Events."""
    for i in items:
        tracker.observe(i)
    tracker.end_pass()
    found = tracker.take()
    return found if whole else [(e.kind, events.SEVERITY_NAMES[e.severity], e.instance) for e in found]


def test_start_and_exit_once_and_not_for_containers_there_at_the_first_pass():
    clock = Clock()
    t = events.Tracker(events.KINDS, clock=clock)
    assert run(t, item("old")) == []                               # seen, not started
    assert run(t, item("old"), item("new", cpu=50)) == [("start", "OKAY", "cgroup-new")]
    assert run(t, item("old"), item("new", cpu=150)) == []
    clock.now += 12
    ends = [run(t, item("new", cpu=250)), run(t)]
    assert ends == [[("exit", "OKAY", "cgroup-old")], [("exit", "OKAY", "cgroup-new")]]


def test_exit_message_gives_the_last_figures_and_whence():
    clock = Clock()
    t = events.Tracker(("exit",), clock=clock)
    run(t)
    run(t, item("job", cpu=250, max_usage=32, disk=(4096, 8192), net=(100, 200)))
    clock.now += 30
    (exit_event,) = run(t, whole=True)
    assert exit_event.type == "uptime" and exit_event.type_instance == "exited"
    assert exit_event.message == ("cgroup-job exited (lived 30 s; CPU 2.50 s, peak memory 32.0 MiB, block read "
                                  "4096 B, written 8192 B, network rx 100 B, tx 200 B; from the last pass)")
    assert exit_event.meta["event"] == "exit" and exit_event.meta["cgroup"] == "/t/job"
    assert exit_event.to_json()["severity"] == "OKAY"


def test_with_collect_on_exit_the_exit_comes_from_the_final_figures_once():
    t = events.Tracker(("exit",), wait_finals=True)
    run(t)
    run(t, item("job", cpu=100))

    class Final(object):
        container, instance, samples = item("job").container, "cgroup-job", item("job", cpu=300).samples
    e = t.final(Final)
    assert "CPU 3.00 s" in e.message and e.message.endswith("from its final figures)")
    assert [run(t) for _ in range(4)] == [[]] * 4                  # not said again from the last pass
    # no final figures: said from the last pass after the grace
    run(t, item("other", cpu=100))
    said = [run(t) for _ in range(events.EXIT_GRACE + 1)]
    assert said == [[]] * events.EXIT_GRACE + [[("exit", "OKAY", "cgroup-other")]]


def test_oom_kills_each_counted_once():
    t = events.Tracker(("oom",))
    assert run(t, item("a", oom=3, limit=32)) == []                # before collectd: not ours to say
    assert run(t, item("a", oom=3, limit=32)) == []
    (e,) = run(t, item("a", oom=5, limit=32), whole=True)
    assert (e.kind, e.severity, e.type, e.type_instance) == ("oom", events.FAILURE, "derive", "memory_oom_kill")
    assert e.message == "cgroup-a: the OOM killer killed 2 processes since the last pass (memory limit 32.0 MiB)"
    assert run(t, item("a", oom=5, limit=32)) == []
    # a container started later: every kill is its own, the first pass included
    assert run(t, item("a", oom=5), item("b", oom=1, limit=32)) == [("oom", "FAILURE", "cgroup-b")]


def test_memory_high_warns_once_and_okays_below_the_hysteresis():
    t = events.Tracker(("memoryhigh",), memory_high=0.9, memory_ok=0.8)
    seq = [50, 92, 95, 85, 91, 79, 79, 93]
    said = [run(t, item("m", working_set=ws, usage=100, limit=100)) for ws in seq]
    assert said == [[], [("memoryhigh", "WARNING", "cgroup-m")], [], [], [], [("memoryhigh", "OKAY", "cgroup-m")],
                    [], [("memoryhigh", "WARNING", "cgroup-m")]]
    assert run(t, item("n", usage=99)) == []                       # no limit: nothing to judge


def test_throttled_warns_once_per_episode():
    t = events.Tracker(("throttled",), throttled=0.25)
    figures = [(0, 0), (10, 8), (20, 16), (30, 18), (40, 19), (50, 30), (50, 30), (50, 30)]
    said = [run(t, item("q", periods=p, throttled=th)) for p, th in figures]
    # no periods in a pass: the quota was lifted (OKAY once), then nothing to judge
    assert said == [[], [("throttled", "WARNING", "cgroup-q")], [], [], [("throttled", "OKAY", "cgroup-q")],
                    [("throttled", "WARNING", "cgroup-q")], [("throttled", "OKAY", "cgroup-q")], []]


def test_kinds_not_wanted_say_nothing_and_meta_data_that_fail_cost_no_event():
    t = events.Tracker(("start",))
    run(t)
    assert run(t, item("x", oom=1, working_set=99, limit=100, periods=10, throttled=10)) == \
        [("start", "OKAY", "cgroup-x")]
    t = events.Tracker(events.KINDS, meta=lambda c: 1 / 0)
    run(t)
    (e,) = run(t, item("y"), whole=True)
    assert e.kind == "start" and e.meta == {"event": "start"}


def _block(text):
    from collectd_cgroups import collectdconf
    (block,) = collectdconf.module_blocks(collectdconf.parse(
        '<Plugin python>\n  <Module "collectd_cgroups">\n%s\n  </Module>\n</Plugin>\n' % text))
    return block


def test_notify_options():
    import pytest
    from collectd_cgroups.config import ConfigError, Options, parse_config
    assert Options().notify == ("oom", "memoryhigh", "throttled")
    opts, _, _ = parse_config(_block('Notify "OOM" "exit" "Start"\nMemoryHighShare 0.75\nThrottledShare 0.5'))
    assert (opts.notify, opts.memory_high, opts.throttled_share) == (("oom", "exit", "start"), 0.75, 0.5)
    assert parse_config(_block("Notify false"))[0].notify == ()
    for text, says in (('Notify "OOMs"', "Notify: unknown event 'OOMs'"), ("MemoryHighShare 1.5", "between 0 and 1"),
                       ("ThrottledShare 0", "positive number")):
        with pytest.raises(ConfigError) as e:
            parse_config(_block(text))
        assert says in str(e.value), e.value
