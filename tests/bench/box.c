/* Synthetic containers for the benchmark: one small process per container.
 *
 *   box COUNT DIRLIST IOFILE
 *
 * DIRLIST has one line per container: its cgroup directories, tab-separated (the last one may be the
 * cgroup2 directory; moving into it may fail on a hybrid host and is then skipped).  For each line the box
 * forks a child that moves itself into those cgroups (writes "0" to cgroup.procs), unshares its network
 * namespace, brings lo up, touches 64 KiB of memory, writes and reads 4 KiB with O_DIRECT at its own offset
 * of IOFILE (so the blkio files list the disk), says it is ready, and sleeps.  The box prints each child's
 * PID, one a line, then "ready", and waits on its stdin: at end of file (the driver exited or closed it),
 * SIGTERM, SIGINT or SIGHUP it kills every child with SIGKILL, reaps them and exits.  Each child also dies
 * with the box (PR_SET_PDEATHSIG), so nothing outlives the benchmark.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t *kids;
static int nkids;
static volatile sig_atomic_t stop;

static volatile sig_atomic_t want_up;

static void on_signal(int sig) { (void)sig; stop = 1; }
static void on_usr1(int sig) { (void)sig; want_up = 1; }

static void link_up(const char *name) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
}

static void die(int fd, const char *what, const char *arg) {
    char msg[512];
    int n = snprintf(msg, sizeof msg, "E %s %s: %s\n", what, arg, strerror(errno));
    if (write(fd, msg, n) < 0) { /* nothing to do */ }
    _exit(1);
}

static void child(int idx, char *dirs, const char *iofile, int ready_fd, pid_t parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, waitmask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &waitmask);     /* delivered only inside sigsuspend: no lost wake-up */
    sigdelset(&waitmask, SIGUSR1);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    char path[65600];
    int ndirs = 0;
    for (char *save = NULL, *d = strtok_r(dirs, "\t", &save); d; d = strtok_r(NULL, "\t", &save)) ndirs++;
    char *d = dirs;
    for (int i = 0; i < ndirs; i++) {
        snprintf(path, sizeof path, "%s/cgroup.procs", d);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        int ok = fd >= 0 && write(fd, "0", 1) == 1;
        if (fd >= 0) close(fd);
        if (!ok && i < ndirs - 1) die(ready_fd, "move to", path);
        d += strlen(d) + 1;
    }
    if (unshare(CLONE_NEWNET) != 0) die(ready_fd, "unshare", "net");
    /* no IPv6: its autoconfiguration chatter on 1000 links would charge softirq time to whoever runs */
    static const char *const v6[] = {"/proc/sys/net/ipv6/conf/all/disable_ipv6",
                                     "/proc/sys/net/ipv6/conf/default/disable_ipv6"};
    for (int i = 0; i < 2; i++) {
        int fd = open(v6[i], O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1", 1) != 1) { /* no IPv6 in this kernel: fine */ }
            close(fd);
        }
    }
    link_up("lo");
    size_t mem = 64 << 10;
    char *m = mmap(NULL, mem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) die(ready_fd, "mmap", "64k");
    for (size_t i = 0; i < mem; i += 4096) m[i] = 1;
    void *buf;
    if (posix_memalign(&buf, 4096, 4096) != 0) die(ready_fd, "posix_memalign", "4k");
    memset(buf, idx & 0xff, 4096);
    int io = open(iofile, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (io < 0) die(ready_fd, "open", iofile);
    if (pwrite(io, buf, 4096, (off_t)idx * 4096) != 4096) die(ready_fd, "pwrite", iofile);
    if (pread(io, buf, 4096, (off_t)idx * 4096) != 4096) die(ready_fd, "pread", iofile);
    close(io);
    char msg[32];
    int n = snprintf(msg, sizeof msg, "R %d\n", idx);
    if (write(ready_fd, msg, n) != n) _exit(1);
    for (;;) {
        sigsuspend(&waitmask);
        if (want_up) {          /* the veth exists now: bring our end up, say so */
            want_up = 0;
            link_up("eth0");
            n = snprintf(msg, sizeof msg, "U %d\n", idx);
            if (write(ready_fd, msg, n) != n) _exit(1);
        }
    }
}

static void reap_all(void) {
    for (int i = 0; i < nkids; i++)
        if (kids[i] > 0) kill(kids[i], SIGKILL);
    for (int i = 0; i < nkids; i++)
        if (kids[i] > 0) waitpid(kids[i], NULL, 0);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: box COUNT DIRLIST IOFILE\n");
        return 2;
    }
    int count = atoi(argv[1]);
    FILE *list = fopen(argv[2], "r");
    if (!list) { perror(argv[2]); return 1; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM);   /* the driver died without closing our stdin: clean up anyway */
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) { perror("pipe"); return 1; }
    kids = calloc(count, sizeof *kids);
    pid_t self = getpid();
    char line[65536];
    int failed = 0;
    for (int i = 0; i < count && !stop; i++) {
        if (!fgets(line, sizeof line, list)) { fprintf(stderr, "box: DIRLIST has only %d lines\n", i); failed = 1; break; }
        line[strcspn(line, "\n")] = 0;
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); failed = 1; break; }
        if (pid == 0) {
            close(pfd[0]);
            child(i, line, argv[3], pfd[1], self);
        }
        kids[nkids++] = pid;
    }
    close(pfd[1]);
    /* readiness: one "R n" line per child, or an "E ..." line from a child that failed */
    FILE *r = fdopen(pfd[0], "r");
    int ready = 0;
    while (!failed && !stop && ready < nkids && fgets(line, sizeof line, r)) {
        if (line[0] == 'R') ready++;
        else { fprintf(stderr, "box: child %s", line + 2); failed = 1; }
    }
    if (!failed && ready < nkids) { fprintf(stderr, "box: only %d of %d children ready\n", ready, nkids); failed = 1; }
    if (failed || stop) { reap_all(); return 1; }
    for (int i = 0; i < nkids; i++) printf("%d\n", kids[i]);
    printf("ready\n");
    fflush(stdout);
    /* commands on stdin: "up" (veths made: children bring eth0 up, then "up" is printed); end of file: stop */
    FILE *in = fdopen(0, "r");
    while (!stop && fgets(line, sizeof line, in)) {
        if (strcmp(line, "up\n") != 0) continue;
        for (int i = 0; i < nkids; i++) kill(kids[i], SIGUSR1);
        int up = 0;
        while (!stop && up < nkids && fgets(line, sizeof line, r))
            if (line[0] == 'U') up++;
        printf("up %d\n", up);
        fflush(stdout);
    }
    reap_all();
    return 0;
}
