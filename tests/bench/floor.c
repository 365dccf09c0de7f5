/* The C floor of the benchmark: what a pass costs when nothing but the kernel's work is done.
 *
 *   floor PASSES PLAN [GAP_MS [keep]]
 *
 * PLAN lists what one pass of the plugin touches, one item a line (the driver writes it from what the
 * plugin itself read in a pass):
 *
 *   D <directory>        list the directory (opendir, readdir to the end, closedir): discovery's walk
 *   F <file>             open, read, close, and add up the numbers in it (a parse that costs next to nothing);
 *                        with "keep": opened once before the first pass, then read with pread at offset 0
 *                        each pass (as the plugin re-reads the files it keeps open), the soft open-files
 *                        limit raised to the hard one for that
 *   N <pid>              the network namespace of <pid>, as network.py does it: a pidfd of <pid> opened
 *                        in the first pass and kept (netns.KeptPidfds), the namespace from it
 *                        (PIDFD_GET_NET_NAMESPACE; else /proc/<pid>/ns/net and pidfd_send_signal(0)),
 *                        setns in, a NETLINK_ROUTE socket, setns back, one RTM_GETSTATS dump of the
 *                        64-bit link statistics, close all but the pidfd
 *
 * Each pass also opens /proc/thread-self/ns/net once (the namespace to come back to), as the plugin does.
 * Prints one line per pass: "pass <cpu ns> <wall ns> <bytes read> <interfaces seen>", CPU time being the
 * thread's (CLOCK_THREAD_CPUTIME_ID).  Run it in the network namespace that holds the host ends of the
 * veths, as the plugin runs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef PIDFD_GET_NET_NAMESPACE
#define PIDFD_GET_NET_NAMESPACE 0xFF04
#endif

enum { OP_DIR, OP_FILE, OP_NET };

struct op {
    int kind;
    int pid;
    int fd;         /* F with "keep": the file's descriptor kept open over the passes; N: the kept pidfd (-1: none) */
    char *path;
};

static struct op *ops;
static size_t nops, capops;
static char buf[65536];
static char nlbuf[65536];
static unsigned long long checksum;
static int ioctl_works = -1;

static long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static size_t read_file(const struct op *o) {
    ssize_t n;
    if (o->fd >= 0) {
        n = pread(o->fd, buf, sizeof buf - 1, 0);
    } else {
        int fd = open(o->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return 0;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
    }
    if (n <= 0) return 0;
    buf[n] = 0;
    /* add up the numbers: the least parse a collector makes */
    for (char *p = buf; *p;) {
        if (*p >= '0' && *p <= '9') checksum += strtoull(p, &p, 10);
        else p++;
    }
    return (size_t)n;
}

static void list_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) checksum += e->d_type;
    closedir(d);
}

static int stats_dump(int sock) {
    struct {
        struct nlmsghdr h;
        struct if_stats_msg m;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_GETSTATS;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = 3;
    req.m.filter_mask = IFLA_STATS_FILTER_BIT(IFLA_STATS_LINK_64);
    if (send(sock, &req, sizeof req, 0) < 0) return -1;
    int links = 0;
    for (;;) {
        ssize_t n = recv(sock, nlbuf, sizeof nlbuf, 0);
        if (n < 0) return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)nlbuf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return links;
            if (h->nlmsg_type == NLMSG_ERROR) return -1;
            if (h->nlmsg_type != RTM_NEWSTATS) continue;
            struct if_stats_msg *m = NLMSG_DATA(h);
            struct rtattr *a = (struct rtattr *)((char *)m + NLMSG_ALIGN(sizeof *m));
            int len = h->nlmsg_len - NLMSG_LENGTH(sizeof *m);
            for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                if (a->rta_type == IFLA_STATS_LINK_64) {
                    struct rtnl_link_stats64 *s = RTA_DATA(a);
                    checksum += s->rx_bytes + s->tx_bytes + s->rx_packets + s->tx_packets;
                    links++;
                }
            }
        }
    }
}

static int net(struct op *o, int home) {
    if (o->fd < 0) o->fd = syscall(SYS_pidfd_open, o->pid, 0);
    int pidfd = o->fd, pid = o->pid;
    if (pidfd < 0) return -1;
    int ns = -1, checked = 0;
    if (ioctl_works != 0) {
        ns = ioctl(pidfd, PIDFD_GET_NET_NAMESPACE, 0);
        if (ns < 0 && ioctl_works < 0 && (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP)) ioctl_works = 0;
        else if (ns >= 0) ioctl_works = 1;
    }
    if (ns < 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
        ns = open(path, O_RDONLY | O_CLOEXEC);
    } else {
        checked = 1;    /* the namespace of the pidfd's own process */
    }
    int links = -1;
    if (ns >= 0 && (checked || syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0)) {
        if (setns(ns, CLONE_NEWNET) != 0) die("setns into a container");
        int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (setns(home, CLONE_NEWNET) != 0) die("setns home");
        close(ns);
        ns = -1;
        if (sock >= 0) {
            links = stats_dump(sock);
            close(sock);
        }
    }
    if (ns >= 0) close(ns);
    return links;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 5 || (argc == 5 && strcmp(argv[4], "keep") != 0)) {
        fprintf(stderr, "usage: floor PASSES PLAN [GAP_MS [keep]]\n");
        return 2;
    }
    int passes = atoi(argv[1]);
    /* GAP_MS: an idle pause before each pass, as collectd leaves between two read passes (caches go cold) */
    long gap_ms = argc >= 4 ? atol(argv[3]) : 0;
    int keep = argc == 5;
    {   /* kept files, and a pidfd per container either way */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    FILE *plan = fopen(argv[2], "r");
    if (!plan) die(argv[2]);
    char line[8192];
    while (fgets(line, sizeof line, plan)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        if (nops == capops) {
            capops = capops ? capops * 2 : 1024;
            ops = realloc(ops, capops * sizeof *ops);
            if (!ops) die("realloc");
        }
        struct op *o = &ops[nops++];
        o->kind = line[0] == 'D' ? OP_DIR : line[0] == 'F' ? OP_FILE : OP_NET;
        o->path = strdup(line + 2);
        o->pid = o->kind == OP_NET ? atoi(line + 2) : 0;
        o->fd = keep && o->kind == OP_FILE ? open(o->path, O_RDONLY | O_CLOEXEC) : -1;
    }
    fclose(plan);
    for (int p = 0; p < passes; p++) {
        if (gap_ms > 0) {
            struct timespec gap = {gap_ms / 1000, (gap_ms % 1000) * 1000000L};
            nanosleep(&gap, NULL);
        }
        long long cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall0 = now_ns(CLOCK_MONOTONIC);
        int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (home < 0) die("/proc/thread-self/ns/net");
        size_t bytes = 0;
        long links = 0;
        for (size_t i = 0; i < nops; i++) {
            struct op *o = &ops[i];
            if (o->kind == OP_DIR) list_dir(o->path);
            else if (o->kind == OP_FILE) bytes += read_file(o);
            else {
                int n = net(o, home);
                if (n > 0) links += n;
            }
        }
        close(home);
        long long cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall1 = now_ns(CLOCK_MONOTONIC);
        printf("pass %lld %lld %zu %ld\n", cpu1 - cpu0, wall1 - wall0, bytes, links);
    }
    fprintf(stderr, "checksum %llu\n", checksum);
    return 0;
}
