#!/usr/bin/env bash
# Installs the Debian packages that building and testing Lightwhale need, when
# missing, and starts a Docker daemon when none answers. Idempotent; run as root.
set -euo pipefail

pkgs=(
  # build
  docker.io mmdebstrap squashfs-tools xorriso grub-pc-bin grub-efi-amd64-bin
  grub-common mtools dosfstools cpio xz-utils kmod sbsigntool
  # the Docker stack from source (dockerstack/build.sh): runc is cgo with libseccomp
  git gcc libc6-dev libseccomp-dev pkg-config
  # tests: real disks and filesystems, QEMU
  btrfs-progs e2fsprogs util-linux fdisk qemu-system-x86 qemu-utils ovmf openssh-client
  iptables ca-certificates curl
  # wifi tests: an access point and a client on simulated radios
  hostapd wpasupplicant busybox-static
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Go toolchain: /usr/local/go on our machines; otherwise Debian's (if new enough).
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  echo "deps: no Go toolchain found (need Go 1.24 or newer at /usr/local/go or on PATH)" >&2
  exit 1
fi

# A Docker daemon for `docker build`. Our machines have no bridge/iptables rights
# to spare, so the daemon runs without them and builds use --network host.
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "deps: starting dockerd"
  mkdir -p /var/log
  nohup dockerd --iptables=false --bridge=none >/var/log/lightwhale-build-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
    sleep 1
  done
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
    echo "deps: dockerd did not answer; see /var/log/lightwhale-build-dockerd.log" >&2; exit 1; }
fi
