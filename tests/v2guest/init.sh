#!/bin/busybox sh
# /init of the v2 guest's initramfs (tests/v2guest/build.py puts it there).
#
# Loads the virtio, 9p, overlay and ext4 modules, mounts the host's root read-only over 9p
# (tag "hostroot") under a tmpfs overlay, mounts the report folder (tag "report", the only
# writable share), mounts proc, sys, dev and cgroup2 (every controller enabled) in the new
# root, and runs /report/run.sh in a chroot there, in the cgroup /init.scope, with its
# output on the serial console.  The exit status goes to /report/exit-status, then the
# guest powers off.  Whatever fails, it powers off (panic=-1 and -no-reboot make qemu exit).

/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "v2guest-init: $*"; }
die() {
    say "FAILED: $*"
    echo "init: $*" > /report/init-error 2>/dev/null
    sync
    poweroff -f
    sleep 5
    exit 1
}

mount -t proc proc /proc || die "mount proc"
mount -t sysfs sysfs /sys || die "mount sysfs"
mount -t devtmpfs devtmpfs /dev || die "mount devtmpfs"

for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m" || die "insmod $m"
done

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 report /report || die "mount the report share"
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=512000,ro hostroot /host \
    || die "mount the host root"
mount -t tmpfs -o mode=0755 overlay-rw /rw || die "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || die "mount the overlay"

R=/newroot
mount -t proc proc $R/proc || die "mount proc in the new root"
mount -t sysfs sysfs $R/sys || die "mount sysfs in the new root"
mount -t devtmpfs devtmpfs $R/dev || die "mount devtmpfs in the new root"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $R/run || die "mount /run"
# /tmp stays the overlay's (writable, host copy read-only beneath): a tmpfs over it would hide a
# checkout that lives under /tmp, as CI's may.
# cgroup2 only, mounted the way systemd mounts it.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $R/sys/fs/cgroup || die "mount cgroup2"
CG=$R/sys/fs/cgroup
for c in $(cat $CG/cgroup.controllers); do
    echo "+$c" > $CG/cgroup.subtree_control || die "enable the $c controller"
done
# The root cgroup has no memory.current and friends: the command runs in a child cgroup.
mkdir $CG/init.scope && echo $$ > $CG/init.scope/cgroup.procs || die "enter /init.scope"
mkdir -p $R/report && mount --bind /report $R/report || die "bind the report share"
hostname ccg-v2guest

[ -f /report/run.sh ] || die "no /report/run.sh"
chroot $R /bin/sh /report/run.sh < /dev/null
status=$?
echo "$status" > /report/exit-status.tmp && mv /report/exit-status.tmp /report/exit-status
say "command exited with status $status"
sync
umount $R/report
umount /report
poweroff -f
sleep 5
