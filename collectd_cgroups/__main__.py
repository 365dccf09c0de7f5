"""Command line: one pass over the same code path as the plugin.

    collectd-cgroups                 a table, one row per container
    collectd-cgroups --json          collectd's JSON format (as write_http's Format JSON)
    collectd-cgroups --root DIR      read DIR/proc/... and DIR/sys/fs/cgroup/... instead of the live system
    collectd-cgroups --pid PID       only the container that PID belongs to
    collectd-cgroups --exited        containers that exited recently, with their final figures
                                     (written by the plugin when CollectOnExit is on)
    collectd-cgroups --config FILE   the options of FILE's <Module "collectd_cgroups"> block
    collectd-cgroups top             a refreshing table of every container (collectd_cgroups.top)
    collectd-cgroups --events        the containers' events as they happen (as the plugin's notifications)
"""

import argparse
import dataclasses
import json
import os
import socket
import sys
import time

from . import __version__, collectdconf, containers, events, identifiers, sentinel
from .collector import GROUPS, Collector
from .config import Options

DEFAULTS = Options()     # the plugin's defaults, the CLI's too

# Where the collectd configuration is looked for without --config (the first that exists): the demo's
# build/collectd.conf when the package runs from a checkout (what `make run` starts collectd with), then
# Debian's and collectd's own default.
CHECKOUT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "collectd.conf")
CONFIG_FILES = ("/etc/collectd/collectd.conf", "/etc/collectd.conf")


def default_config_files():
    checkout = os.path.dirname(os.path.dirname(CHECKOUT_CONFIG))
    in_checkout = os.path.isfile(os.path.join(checkout, "conf", "collectd.conf.in"))
    return ((CHECKOUT_CONFIG,) if in_checkout else ()) + CONFIG_FILES


def add_selection_arguments(p):
    """The options that say which containers are read and how (the plugin's own options), shared by the
    one-pass CLI and ``top``.  Single-valued ones default to None: given, they replace the --config file's."""
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE",
                        help="apply the <Module \"collectd_cgroups\"> block of this collectd configuration "
                             "(Include followed); the options below add to its lists and replace its other "
                             "values (default: the first of %s found; none with --root)"
                             % ", ".join(default_config_files()))
    source.add_argument("--no-config", action="store_true",
                        help="read no collectd configuration: only the options given")
    p.add_argument("--root", metavar="DIR", help="read DIR/proc and DIR/sys/fs/cgroup (default HostRoot, or /)")
    p.add_argument("--match", action="append", default=[], metavar="REGEX[@RUNTIME]",
                   help="also report cgroups whose path matches REGEX (named groups: name, id); "
                        "runtime label after the last '@' (default cgroup)")
    p.add_argument("--ignore", action="append", default=[], metavar="REGEX", help="skip containers whose cgroup path matches")
    p.add_argument("--runtimes", nargs="+", help="built-in layouts to recognise")
    p.add_argument("--metrics", nargs="+", default=None,
                   help="metric groups to read (default: all; without network when --root is not /)")
    p.add_argument("--interface", action="append", default=[], metavar="NAME|/REGEX/",
                   help="interfaces to report (default: all but lo), as the Interface option")
    p.add_argument("--ignore-selected", action="store_true", help="report all interfaces but the --interface ones")
    p.add_argument("--ignore-value", action="append", default=[], metavar="PATTERN",
                   help="leave out values whose type-type_instance matches this shell pattern "
                        "(memory-active_*), as the IgnoreValue option")
    p.add_argument("--per-cpu", action="store_true", help="also per-CPU usage")
    p.add_argument("--instance-format", help="as InstanceFormat (default %s)" % DEFAULTS.instance_format)
    p.add_argument("--docker-data-root", help="as DockerDataRoot (default: data-root of "
                   "<root>/etc/docker/daemon.json, else /var/lib/docker)")
    p.add_argument("--containers-storage", help="as ContainersStorage, podman's and CRI-O's storage (default: "
                   "graphroot of <root>/etc/containers/storage.conf, else /var/lib/containers/storage)")
    p.add_argument("--containers-run-root", help="as ContainersRunRoot, CRI-O's and podman's run state (default: "
                   "runroot of <root>/etc/containers/storage.conf, else /run/containers/storage)")
    p.add_argument("--containerd-state", action="append", default=None, metavar="DIR",
                   help="a containerd state directory (repeatable; default %s)" % " ".join(DEFAULTS.containerd_states))
    p.add_argument("--no-pods", action="store_true", help="do not report Kubernetes pods' own cgroups")
    p.add_argument("--meta-label", action="append", default=[], metavar="KEY",
                   help="add this container label to the --json meta data (as MetaLabel)")


def options_from_args(args, keep_files=False):
    """The collector's Options from the arguments of :func:`add_selection_arguments` over those of the
    collectd configuration (:func:`config_file_options`).  ``keep_files``: KeepFilesOpen (False for one
    pass: nothing to keep; otherwise the file's KeepFilesOpen wins)."""
    base, given = config_file_options(args)
    groups = args.metrics
    if groups is None and "metrics" in given:
        groups = base.groups
    elif groups is None:
        # A captured tree has no live processes whose namespaces could be entered.
        groups = [g for g in GROUPS if g != "network" or args.root in (None, "", "/")]
    given_path = lambda value, default: _root_arg(value) if value is not None else default
    states = (list(base.containerd_states) if "containerdstate" in given else []) \
        + [d.rstrip("/") for d in args.containerd_state or ()]
    return dataclasses.replace(
        base, root=args.root if args.root is not None else base.root, groups=groups,
        per_cpu=base.per_cpu or args.per_cpu, interfaces=base.interfaces + args.interface,
        ignore_selected=base.ignore_selected or args.ignore_selected,
        ignore_values=base.ignore_values + args.ignore_value,
        keep_files=base.keep_files if keep_files is not False and "keepfilesopen" in given else keep_files,
        instance_format=args.instance_format if args.instance_format is not None else base.instance_format,
        match=base.match + [_match_option(m) for m in args.match], ignore=base.ignore + args.ignore,
        runtimes=args.runtimes if args.runtimes is not None else base.runtimes,
        docker_root=given_path(args.docker_data_root, base.docker_root),
        storage_root=given_path(args.containers_storage, base.storage_root),
        run_root=given_path(args.containers_run_root, base.run_root),
        containerd_states=states or DEFAULTS.containerd_states, pods=base.pods and not args.no_pods,
        meta_labels=base.meta_labels + tuple(args.meta_label))


def config_file_options(args):
    """(Options, lowercased option names given) of the collectd configuration's <Module "collectd_cgroups">
    block: --config's file, else the first of default_config_files() (none with --root: a tree read from
    elsewhere is not the host whose configuration is here), else none (the defaults).  What was read goes
    to stderr; a file that cannot be read or parsed, or an option the plugin refuses: a message naming the
    file, line and option, and exit status 2 (as argparse's errors)."""
    path = args.config
    if args.no_config or (path is None and args.root is not None):
        return Options(), set()
    if path is None:
        path = next((f for f in default_config_files() if os.path.isfile(f)), None)
        if path is None:
            _note("no collectd configuration found (%s): the defaults" % ", ".join(default_config_files()))
            return Options(), set()
        _note("options from %s" % path)
    try:
        blocks = collectdconf.module_blocks(collectdconf.read_config(path, warn=lambda m: _note("warning: " + m)))
        if not blocks:
            _note("%s has no <Module \"%s\"> block in <Plugin python>: the defaults" % (path, collectdconf.MODULE))
            return Options(), set()
        if len(blocks) > 1:
            _note("%d <Module \"%s\"> blocks (%s): the first taken" % (
                len(blocks), collectdconf.MODULE, ", ".join("%s:%d" % (b.path, b.line) for b in blocks)))
        # --root replaces HostRoot, unchecked (it may name a directory of the machine collectd runs on).
        return collectdconf.block_options(blocks[0], leave_out=("hostroot",) if args.root is not None else ())
    except collectdconf.ConfigFileError as e:
        _note(str(e))
        raise SystemExit(2)


def _note(message):
    print("collectd-cgroups: %s" % message, file=sys.stderr)


def _root_arg(path):
    return path.rstrip("/") or "/" if path is not None else None


def _parse_args(argv):
    p = argparse.ArgumentParser(
        prog="collectd-cgroups",
        description="One collection pass over every container cgroup; prints what the collectd plugin would dispatch.")
    p.add_argument("--version", action="version", version="%(prog)s " + __version__)
    p.add_argument("--json", action="store_true", help="print collectd's JSON format")
    p.add_argument("--pid", type=int, help="only the container this process belongs to")
    p.add_argument("--layout", action="store_true", help="print the cgroup layout found and exit")
    add_selection_arguments(p)
    p.add_argument("--host-veth", action="store_true", help="show the host end of each container veth")
    p.add_argument("--exited", nargs="?", const=sentinel.STATE_FILE, metavar="FILE",
                   help="show recently exited containers and their final figures (CollectOnExit; "
                        "default file %s)" % sentinel.STATE_FILE)
    p.add_argument("--interval", type=float, default=None,
                   help="interval written into --json output (default 10); with --events, seconds between "
                        "passes (default 2)")
    p.add_argument("--events", action="store_true",
                   help="print the containers' events (OOM kills, starts, exits, memory near its limit, CPU "
                        "throttling: the plugin's notifications) as they happen, a line each (--json: JSON)")
    p.add_argument("--passes", type=int, metavar="N", help="with --events: stop after N passes")
    return p.parse_args(argv)


def _match_option(text):
    regex, sep, label = text.rpartition("@")
    if sep and label and identifiers.sanitize(label) == label and label.replace(".", "").isalnum():
        return regex, label
    return text, "cgroup"


def _human_bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def _table(results, host_veth=False):
    pods = any(item.container.info.pod for item in results)
    head = ["CONTAINER", "RUNTIME"] + (["NAMESPACE", "POD"] if pods else []) + ["CPU s", "USER s", "SYS s", "MEM USAGE", "MEM LIMIT", "BLK READ", "BLK WRITE",
            "NET RX", "NET TX", "PIDS"]
    rows = [head + (["HOST VETH"] if host_veth else []) + ["CGROUP"]]
    for item in results:
        s = {(t, ti): v[0] for t, ti, v in item.samples}
        disk = next((v for t, ti, v in item.samples if (t, ti) == ("disk_octets", "total")), (None, None))
        nets = [v for t, ti, v in item.samples if t == "if_octets"]
        net = (sum(v[0] for v in nets), sum(v[1] for v in nets)) if nets else (None, None)
        cpu = lambda k: "%.2f" % (s[("cpu", k)] / 100.0) if ("cpu", k) in s else "-"
        info = item.container.info
        row = [item.instance, item.container.runtime] + ([info.namespace or "-", info.pod or "-"] if pods else []) + [
               cpu("total"), cpu("user"), cpu("system"),
               _human_bytes(s.get(("memory", "usage"))),
               _human_bytes(s.get(("memory", "limit"))) if ("memory", "limit") in s else "none",
               _human_bytes(disk[0]), _human_bytes(disk[1]), _human_bytes(net[0]), _human_bytes(net[1]),
               str(s.get(("count", "pids"), "-"))]
        if host_veth:
            row.append(",".join("%s=%s" % kv for kv in sorted((item.peers or {}).items())) or "-")
        rows.append(row + [item.container.cgroup])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows)


def to_collectd_json(results, host, interval, now=None, meta_labels=()):
    """collectd's JSON format: one object per value list, with the meta data of SendMeta."""
    now = time.time() if now is None else now
    out = []
    for item in results:
        for meta, samples in identifiers.meta_groups(item.samples, item.peers, item.container.meta(meta_labels)):
            for type_, type_instance, values in samples:
                ds = identifiers.data_sources(type_)
                out.append({
                    "values": list(values),
                    "dstypes": [t for _, t in ds],
                    "dsnames": [n for n, _ in ds],
                    "time": round(now, 3),
                    "interval": interval,
                    "host": host,
                    "plugin": identifiers.PLUGIN,
                    "plugin_instance": item.instance,
                    "type": type_,
                    "type_instance": type_instance,
                    "meta": meta,
                })
    return out


def _exited(args):
    """--exited (issue 6): the finals the plugin wrote, newest last."""
    try:
        finals = sentinel.read_state(args.exited)
    except (OSError, ValueError) as e:
        print("collectd-cgroups: no exited containers recorded (%s; is CollectOnExit on?)" % e, file=sys.stderr)
        return 1
    if args.json:
        json.dump(finals, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    rows = [["EXITED", "CONTAINER", "RUNTIME", "CPU s", "MEM PEAK", "BLK READ", "BLK WRITE", "NET RX", "NET TX",
             "REMOVED"]]
    for f in finals:
        t, values = f["totals"], {(a, b): v for a, b, v in f["values"]}
        peak = values.get(("memory", "max_usage"))
        rows.append([time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["time"])), f["instance"], f["runtime"],
                     "%.2f" % t["final_cpu"] if "final_cpu" in t else "-", _human_bytes(peak[0] if peak else None)]
                    + [_human_bytes(t.get(k)) for k in ("final_disk_read", "final_disk_write", "final_net_rx",
                                                        "final_net_tx")]
                    + ["yes" if f["removed"] else "no"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    return 0


def _events(args, collector, options, warnings):
    """--events: passes every --interval seconds, each event printed as the pass finds it.  Every kind of
    event (the thresholds are the options'); the first pass only takes stock (nothing has "started")."""
    tracker = events.Tracker(events.KINDS, memory_high=options.memory_high,
                             throttled=options.throttled_share, meta=lambda c: c.meta(options.meta_labels))
    interval = args.interval or 2.0
    due = time.monotonic()
    passes = 0
    try:
        while args.passes is None or passes < args.passes:
            for item in collector.collect():
                tracker.observe(item)
            tracker.end_pass()
            passes += 1
            for event in tracker.take():
                print(json.dumps(event.to_json()) if args.json else event.line(), flush=True)
            for w in warnings:
                print("collectd-cgroups: warning: %s" % w, file=sys.stderr)
            del warnings[:]
            due += interval
            if args.passes is None or passes < args.passes:
                time.sleep(max(0.0, due - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        collector.close()
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "top":           # the refreshing view: a module of its own
        from . import top
        return top.main(argv[1:])
    args = _parse_args(argv)
    if args.exited:
        return _exited(args)
    # One pass keeps nothing open; --events makes pass after pass.
    options = options_from_args(args, keep_files="auto" if args.events else False)
    warnings = []
    try:
        collector = Collector(options, warn=warnings.append)
    except ValueError as e:
        print("collectd-cgroups: %s" % e, file=sys.stderr)
        return 2
    if args.events:
        return _events(args, collector, options, warnings)
    if args.layout:
        print(collector.hierarchies().describe())
        return 0
    found = collector.discover()
    if args.pid is not None:
        try:
            paths = containers.cgroups_of_pid(args.pid, collector.root)
        except OSError as e:
            print("collectd-cgroups: cannot read the cgroups of PID %d: %s" % (args.pid, e.strerror), file=sys.stderr)
            return 1
        keys = set()
        by_key = dict((c.key, c) for c in found)
        by_path = dict((c.cgroup, c) for c in found)    # the same id under two parents: two containers
        for path in paths:
            hit = collector.discovery.matcher.container_path(path)
            if hit is not None and hit[0] in by_path:
                keys.add(by_path[hit[0]].key)
            elif hit is not None and hit[1][:2] in by_key:
                keys.add(hit[1][:2])
            elif hit is not None:       # a pod's sandbox: the pod stands for it
                keys.update(c.key for c in found if c.runtime == containers.POD and path.startswith(c.cgroup + "/"))
        found = [c for c in found if c.key in keys]
        if not found:
            print("collectd-cgroups: PID %d is in no container cgroup (%s)" % (args.pid, ", ".join(paths)),
                  file=sys.stderr)
            return 1
    results = collector.collect(found)
    collector.close()           # one pass: nothing to keep (its inotify watches on names' state)
    for w in warnings:
        print("collectd-cgroups: warning: %s" % w, file=sys.stderr)
    if args.json:
        json.dump(to_collectd_json(results, socket.gethostname(), args.interval or 10.0,
                                   meta_labels=options.meta_labels),
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif results:
        print(_table(results, host_veth=args.host_veth))
    else:
        print("no container found (%s)" % collector.hierarchies().describe().splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
