#!/usr/bin/env bash
# The project's copy of the shared on-kernel runner (called by .ci/kernels).
# Run one program (with its shared libraries) under another Linux kernel, in a qemu guest.
# Usage: tools/on-kernel.sh VMLINUZ [--copy DIR]... [--with BINARY]... PROGRAM [ARGS...]
# The guest's root is an initramfs holding busybox, PROGRAM, every library ldd names for it,
# any --copy DIR (copied to the same path) and any --with BINARY (with its libraries, at the
# same path; /bin/sh and /usr/bin/env stay busybox unless given). Prints the program's output
# and exits with its status. ON_KERNEL_TIMEOUT (s), ON_KERNEL_MEM, ON_KERNEL_KVM=1 tune it.
# Needs qemu-system-x86, busybox-static and cpio (apt-get install). The guest has loopback up,
# no other network, and runs as root in /tmp of an in-memory root file system. Without KVM the
# guest is emulated (TCG): expect roughly 10x slower than the host.
# Example: the test suite on Debian's 6.1 cloud kernel.
#   apt-get download linux-image-6.1.0-50-cloud-amd64 && dpkg-deb -x linux-image-6.1.0-50-cloud-amd64_*.deb k61
#   mkdir -p /tmp/guest-bin && cp .build/debug/swift-uringPackageTests.xctest .build/debug/uring-* /tmp/guest-bin/
#   on-kernel.sh k61/boot/vmlinuz-6.1.0-50-cloud-amd64 --copy /tmp/guest-bin --copy /usr/lib/python3.11 \
#     --with /usr/bin/python3 --with /bin/dash --with /usr/bin/cat --with /usr/bin/env --with /usr/bin/curl \
#     /tmp/guest-bin/swift-uringPackageTests.xctest --testing-library swift-testing
set -eu
vmlinuz=$1; shift
copies=(); withs=()
while true; do
  case "${1:-}" in
    --copy) copies+=("$2"); shift 2 ;;
    --with) withs+=("$2"); shift 2 ;;
    *) break ;;
  esac
done
prog=$(readlink -f "$1"); shift
work=$(mktemp -d /tmp/on-kernel.XXXX)
root=$work/root
mkdir -p $root/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox $root/bin/busybox
for a in sh mount poweroff mkdir cat echo sync ls rm ip ifconfig; do ln -s busybox $root/bin/$a; done
mkdir -p $root/usr/bin; ln -s /bin/busybox $root/usr/bin/env
# Removes the destination first: the guest's /usr/bin/env is an absolute link to
# /bin/busybox, and copying onto it would overwrite the host's busybox.
addlib() { local f; for f in "$@"; do [ -e "$f" ] || continue; mkdir -p "$root$(dirname "$f")"; rm -f "$root$f"; cp -L "$f" "$root$f"; done; }
addlib "$prog"
libs=$(ldd "$prog" | grep -oE '/[^ ]+' | sort -u)
addlib $libs
for w in "${withs[@]}"; do
  rm -f "$root$w"; addlib "$w" $(ldd "$w" 2>/dev/null | grep -oE '/[^ ]+' | sort -u)
done
for d in "${copies[@]}"; do mkdir -p "$root$d"; cp -a "$d/." "$root$d/"; done
args=$(printf '%q ' "$@")
cat > $root/init <<INIT
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "guest kernel: \$(cat /proc/sys/kernel/osrelease)"
cd /tmp
$prog $args
echo "on-kernel exit status: \$?"
sync; poweroff -f
INIT
chmod +x $root/init
(cd $root && find . | cpio -o -H newc 2>/dev/null | gzip -1 > $work/initrd.gz)
kvm=""; [ "${ON_KERNEL_KVM:-0}" = 1 ] && [ -w /dev/kvm ] && kvm="-enable-kvm -cpu ${ON_KERNEL_CPU:-host,-arch-capabilities}"
timeout ${ON_KERNEL_TIMEOUT:-600} qemu-system-x86_64 $kvm -m ${ON_KERNEL_MEM:-4G} -smp 2 -nographic -no-reboot \
  -kernel "$vmlinuz" -initrd $work/initrd.gz -append "console=ttyS0 quiet panic=-1 rdinit=/init" 2>&1 | tee $work/out | grep --line-buffered -v -E '^\[ *[0-9]+\.[0-9]+\]' 
status=$(grep -oE 'on-kernel exit status: [0-9]+' $work/out | grep -oE '[0-9]+$' || echo 99)
rm -rf $work
exit $status
