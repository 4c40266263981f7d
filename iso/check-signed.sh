#!/usr/bin/env bash
# Secure Boot's chain, checked before the ISO is packed: each of FILES (shim,
# GRUB, the kernel) carries an Authenticode signature, and every kernel
# module under MODDIR carries the kernel's module signature. With Secure
# Boot on, the firmware would refuse the first, the kernel the second.
# usage: iso/check-signed.sh MODDIR FILE...
set -euo pipefail
moddir=$1; shift
for f in "$@"; do
  sbverify --list "$f" 2>/dev/null | grep -q '^signature 1' \
    || { echo "iso/build.sh: $(basename "$f") carries no Secure Boot signature" >&2; exit 1; }
done
unsigned=$(find "$moddir" -name '*.ko' -print0 | xargs -0 -r sh -c '
  for m; do [ "$(tail -c 28 "$m")" = "~Module signature appended~" ] || echo "${m##*/}"; done' sh)
[ -z "$unsigned" ] || { echo "iso/build.sh: unsigned kernel modules (Secure Boot would refuse them):" $unsigned >&2; exit 1; }
