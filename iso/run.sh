#!/usr/bin/env bash
# Boots the ISO in QEMU as the seeds do: 2 GiB, virtio NIC with SSH on
# 127.0.0.1:10022 and HTTP on 127.0.0.1:10080, serial console on this terminal
# (Ctrl-A X quits). KVM when /dev/kvm exists, software emulation otherwise.
# usage: iso/run.sh ISO [DISKS]   DISKS persistence disks build/disk-N.img,
# made sparse (8 GiB) with the magic header when missing.
set -euo pipefail

iso=$1 disks=${2:-0}
build=$(cd "$(dirname "$iso")" && pwd)
case "$disks" in ''|*[!0-9]*) echo "run.sh: DISKS must be a number, got '$disks'" >&2; exit 2 ;; esac

args=(-m 2G -smp 2 -cdrom "$iso" -boot d
  -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:10022-:22,hostfwd=tcp:127.0.0.1:10080-:80
  -device virtio-rng-pci
  -device virtio-serial -chardev socket,id=qga,path="$build/qga.sock",server=on,wait=off
  -device virtserialport,chardev=qga,name=org.qemu.guest_agent.0
  -nographic)
if [ -w /dev/kvm ]; then
  args+=(-enable-kvm -cpu host)
else
  args+=(-accel tcg)
fi
for n in $(seq 1 "$disks"); do
  img=$build/disk-$n.img
  if [ ! -e "$img" ]; then
    truncate -s 8G "$img"
    printf 'lightwhale-please-format-me\n' | dd of="$img" conv=notrunc status=none
    echo "run.sh: made $img (8 GiB sparse, magic header: claimed for persistence at boot)"
  fi
  args+=(-drive "file=$img,format=raw,if=virtio")
done
exec qemu-system-x86_64 "${args[@]}"
