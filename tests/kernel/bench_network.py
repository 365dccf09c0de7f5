"""Cost of the network counters per container: netlink in the namespace vs /proc/<pid>/net/dev.

Not a test (pytest does not collect it): run as root from the checkout,

    .venv/bin/python -m tests.kernel.bench_network [--containers 40] [--runs 5] [--rounds 20]

It builds the lab of test_network.py (a host namespace of its own, N "containers": sleep processes in
cgroups of ours, each in its own namespace with a veth to the host namespace), measures on a thread in
the lab's host namespace, prints microseconds per container (median of the runs, min-max), and removes
everything.  Variants:

  proc_net_dev        open/read/close /proc/<pid>/net/dev and parse it (what the netlink path is held to)
  pid_check_pidfd     netns.open_netns: pidfd_open, PIDFD_GET_NET_NAMESPACE, /proc/<pid>/cgroup check,
                      pidfd_send_signal(0), close (needed before either way of reading: PID reuse)
  pid_check_proc      the same through /proc/<pid>/ns/net (kernels without the ioctl)
  pid_check_kept      netns.KeptPidfds: the namespace from a pidfd kept from pass to pass (what passes do;
                      the cgroup checked again every 30 uses)
  netlink_steady      setns in, netlink socket, setns back, netns cookie, RTM_GETSTATS, SIOCGIFNAME check,
                      samples, close: what a pass does per container once it knows the namespace
  netlink_getlink     the same with an RTM_GETLINK dump (+ RTM_GETNSID) every time (new namespaces,
                      kernels without netns cookie)
  pass_per_container  a whole NetworkPass over all containers (Home, PID checks, host veth dump, peers),
                      divided by N
  pyroute2_*          where pyroute2 is installed: IPRoute().get_links() per container (socket made in
                      the namespace), and pyroute2's ifinfmsg decoder on our own raw RTM_GETLINK bytes
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from collectd_cgroups import fs, netlink, netns, network
from tests.support.netnsutil import NetLab


def proc_net_dev(pid):
    data = fs.read_bytes("/proc/%d/net/dev" % pid)
    out = []
    for line in data.split(b"\n")[2:]:
        if not line:
            continue
        name, _, rest = line.rpartition(b":")
        f = rest.split()
        ti = name.strip().decode("utf-8", "surrogateescape")
        out.append(("if_octets", ti, (int(f[0]), int(f[8]))))
        out.append(("if_packets", ti, (int(f[1]), int(f[9]))))
        out.append(("if_errors", ti, (int(f[2]), int(f[10]))))
        out.append(("if_dropped", ti, (int(f[3]), int(f[11]))))
    return out


def measure(fn, items, rounds):
    """Mean microseconds per item of ``fn(item)`` over ``rounds`` rounds of all items."""
    for item in items:      # warm-up
        fn(item)
    start = time.perf_counter()
    for _ in range(rounds):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) / (rounds * len(items)) * 1e6


def bench(lab, boxes, runs, rounds):
    reader = network.NetworkReader()
    cold = network.NetworkReader()
    home = netns.Home()
    handles = {b.pid: netns.open_netns(b.pid, b.cgroup) for b in boxes}
    p = reader.begin()
    for b in boxes:                             # learn the namespaces, as a first pass does
        p.read(b.key, b.pid, b.cgroup)

    def netlink_steady(b):
        sock = netns.call_in(handles[b.pid], home, network.netlink_socket)
        with sock:
            return p._samples(sock, home, [])

    pc = cold.begin()

    def netlink_getlink(b):
        sock = netns.call_in(handles[b.pid], home, network.netlink_socket)
        with sock:
            cold.info.clear()
            return pc._samples(sock, home, [])

    def whole_pass(_):
        with reader.begin() as q:
            for b in boxes:
                q.read(b.key, b.pid, b.cgroup)

    kept = netns.KeptPidfds()
    variants = [
        ("proc_net_dev", lambda b: proc_net_dev(b.pid), boxes, 1),
        ("pid_check_pidfd", lambda b: netns.open_netns(b.pid, b.cgroup, use_pidfd=True).close(), boxes, 1),
        ("pid_check_proc", lambda b: netns.open_netns(b.pid, b.cgroup, use_pidfd=False).close(), boxes, 1),
        ("pid_check_kept", lambda b: kept.open_netns(b.pid, b.cgroup).close(), boxes, 1),
        ("netlink_steady", netlink_steady, boxes, 1),
        ("netlink_getlink", netlink_getlink, boxes, 1),
        ("pass_per_container", whole_pass, [None], len(boxes)),
    ]
    try:
        import pyroute2
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    except ImportError:
        pyroute2 = None
        print("(pyroute2 not installed: its variants are left out)")
    if pyroute2 is not None:
        def pyroute2_get_links(b):
            with netns.entered(handles[b.pid], home):
                ipr = pyroute2.IPRoute()
            try:
                return [(l.get_attr("IFLA_IFNAME"), l.get_attr("IFLA_STATS64")) for l in ipr.get_links()]
            finally:
                ipr.close()

        def pyroute2_decode(b):
            with netns.entered(handles[b.pid], home):
                sock = network.netlink_socket()
            with sock:
                sock.send(netlink.LINKS_REQUEST)
                chunks = []
                while True:
                    data = sock.recv(65536)
                    chunks.append(data)
                    if netlink.parse_messages(data, [], []):
                        break
            out = []
            for data in chunks:
                pos = 0
                while pos + 16 <= len(data):
                    mlen, mtype = netlink._NLMSGHDR.unpack_from(data, pos)[:2]
                    if mtype == netlink.RTM_NEWLINK:
                        m = ifinfmsg(data[pos:pos + mlen])
                        m.decode()
                        out.append((m.get_attr("IFLA_IFNAME"), m.get_attr("IFLA_STATS64")))
                    pos += (mlen + 3) & ~3
            return out
        few = boxes[:min(len(boxes), 10)]
        variants += [("pyroute2_get_links", pyroute2_get_links, few, 1),
                     ("pyroute2_decode", pyroute2_decode, few, 1)]
    results = {name: [] for name, _, _, _ in variants}
    for run in range(runs):
        for name, fn, items, per in variants:
            r = max(1, rounds // 5) if name.startswith("pyroute2") or name == "pass_per_container" else rounds
            results[name].append(measure(fn, items, r) / per)
    p.close()
    pc.close()
    for h in handles.values():
        h.close()
    home.close()
    return results


def crowded(lab, sizes, passes):
    """A container that makes interfaces by the thousand (veth pairs inside its own namespace): the cost of
    one steady pass over it with MaxInterfaces at its default and with no limit at all (what it was before
    the limit), and the values each dispatches.  Returns [(interfaces, {limit: (us per pass, values)})]."""
    box = lab.box("crowd")
    made = 0
    out = []
    for size in sizes:
        script = "\n".join("link add cx%d type veth peer name cy%d" % (n, n) for n in range(made, size // 2))
        subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % box.pid, "--", "ip", "-batch", "-"],
                input=script.encode(), check=True)
        made = size // 2
        row = {}
        for limit in (network.MAX_INTERFACES, 10 ** 6):
            reader = lab.in_host(network.NetworkReader, max_interfaces=limit, host_peers=False)

            def one_pass():
                with reader.begin() as p:
                    return p.read(box.key, box.pid, box.cgroup)
            res = lab.in_host(one_pass)         # learns the namespace (RTM_GETLINK)
            times = []
            for _ in range(passes):
                t = time.perf_counter()
                lab.in_host(one_pass)
                times.append(time.perf_counter() - t)
            row[limit] = (statistics.median(times) * 1e6, len(res.samples))
        out.append((2 * made + 1, row))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crowded", default="", help="instead: one container with this many interfaces, "
                    "comma-separated sizes (e.g. 1000,2000,5000): a pass's cost with and without MaxInterfaces")
    ap.add_argument("--containers", type=int, default=40, help="network namespaces (at most 60)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20, help="passes over all containers per run")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes network namespaces, veths and cgroups")
    lab = NetLab()
    if args.crowded:
        try:
            rows = crowded(lab, [int(n) for n in args.crowded.split(",")], args.rounds)
        finally:
            lab.close()
        print("one container, steady pass (median of %d), MaxInterfaces %d vs no limit" % (args.rounds, network.MAX_INTERFACES))
        print("%10s %14s %8s %14s %8s" % ("interfaces", "limited us", "values", "unlimited us", "values"))
        for n, row in rows:
            (lt, lv), (ut, uv) = row[network.MAX_INTERFACES], row[10 ** 6]
            print("%10d %14.0f %8d %14.0f %8d" % (n, lt, lv, ut, uv))
        return
    try:
        t = time.monotonic()
        boxes = [lab.box("b%d" % i) for i in range(min(args.containers, 60))]
        print("%d containers (own network namespace, lo + eth0 veth to the host namespace) in %.1f s; "
              "kernel %s; pidfd namespace ioctl: %s" % (len(boxes), time.monotonic() - t, os.uname().release,
                                                        "yes" if netns.pidfd_ioctl_supported() else "no"))
        results = lab.in_host(bench, lab, boxes, args.runs, args.rounds)
    finally:
        lab.close()
    print("\nmicroseconds per container, %d runs (median, min-max of the runs' means)" % args.runs)
    print("%-20s %9s %19s" % ("variant", "median", "min-max"))
    for name, values in results.items():
        print("%-20s %9.1f %9.1f-%-9.1f" % (name, statistics.median(values), min(values), max(values)))
    med = {k: statistics.median(v) for k, v in results.items()}
    print("\nnetlink_steady / proc_net_dev                  = %.2fx" % (med["netlink_steady"] / med["proc_net_dev"]))
    print("netlink_getlink / proc_net_dev                 = %.2fx" % (med["netlink_getlink"] / med["proc_net_dev"]))
    print("pass_per_container / (proc_net_dev + pid check) = %.2fx"
          % (med["pass_per_container"] / (med["proc_net_dev"] + med["pid_check_pidfd"])))
    if "pyroute2_get_links" in med:
        print("pyroute2_get_links / netlink_getlink           = %.1fx"
              % (med["pyroute2_get_links"] / med["netlink_getlink"]))


if __name__ == "__main__":
    main()
