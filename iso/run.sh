#!/usr/bin/env bash
# Boots the ISO in QEMU as the seeds do: 2 GiB (MEM=MiB), virtio NIC with SSH
# on 127.0.0.1:10022 and HTTP on 127.0.0.1:10080, serial console on this
# terminal (Ctrl-A X quits). The QEMU command line is the test harness's own
# (tests/vm, through tests/vm/cmd/lwqemu); so is the accelerator decision:
# KVM only when a KVM guest really boots here, else TCG
# (LIGHTWHALE_ACCEL=kvm|tcg overrides).
# usage: iso/run.sh ISO [DISKS]   DISKS persistence disks build/disk-N.img,
# made sparse (8 GiB) with the magic header when missing.
set -euo pipefail

iso=$1
build=$(cd "$(dirname "$iso")" && pwd)
lwqemu=$build/lwqemu
[ -x "$lwqemu" ] || { echo "run.sh: $lwqemu missing: make $build/lwqemu" >&2; exit 2; }
exec "$lwqemu" -iso "$iso" -disks "${2:-${DISKS:-0}}" -mem "${MEM:-2048}"
