#!/usr/bin/env bash
# Builds the Lightwhale ISO: rootfs image (rootfs/Dockerfile) -> squashfs ->
# initramfs with the lightwhale binary as /init -> hybrid BIOS/UEFI ISO.
# usage: [CUSTOM=Dockerfile] [SIGN_KEY=key.pem] iso/build.sh VERSION BIN OUT.iso    (all outputs go next to OUT)
set -euo pipefail

version=$1 bin=$2 out=$3
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$(dirname "$out")" && pwd)
image=lightwhale:$version
export PATH=/usr/local/go/bin:$PATH

step() { printf '== %s (%ss)\n' "$*" "$SECONDS"; }

# SIGN_KEY: an ed25519 private key (PEM, e.g. openssl genpkey -algorithm
# ed25519) signs the ISO's manifest; its public key goes into the image, which
# then lets `lightwhale upgrade` install only ISOs signed with it. Checked
# first, so a bad key stops the build before anything is made.
if [ -n "${SIGN_KEY:-}" ]; then
  [ -r "$SIGN_KEY" ] || { echo "iso/build.sh: SIGN_KEY=$SIGN_KEY: no such readable file" >&2; exit 1; }
  openssl pkey -in "$SIGN_KEY" -noout -text 2>/dev/null | grep -q '^ED25519 Private-Key' ||
    { echo "iso/build.sh: SIGN_KEY=$SIGN_KEY is not an ed25519 private key (openssl genpkey -algorithm ed25519 -out key.pem)" >&2; exit 1; }
fi

# 1. The Debian suite (SUITE=, default trixie) and the base image. No
# registry answers on our machines: make it locally with mmdebstrap.
suite=${SUITE:-trixie}
mirror=http://deb.debian.org
case $suite in *[!a-z0-9-]*|'') echo "iso/build.sh: SUITE=$suite is not a Debian suite name" >&2; exit 1 ;; esac
have() { curl -fsS -o /dev/null "$1/dists/$2/InRelease" 2>/dev/null; }
have "$mirror/debian" "$suite" || { echo "iso/build.sh: Debian suite $suite is not on $mirror" >&2; exit 1; }
sources=$suite security=
have "$mirror/debian" "$suite-updates" && sources="$sources $suite-updates"
have "$mirror/debian-security" "$suite-security" && security=$suite-security
if ! docker image inspect "debian:$suite-slim" >/dev/null 2>&1; then
  step "making debian:$suite-slim with mmdebstrap"
  # Through a file: a failed mmdebstrap piped to docker import would leave
  # an empty image under the tag that every later build reuses.
  mmdebstrap --quiet --variant=minbase "$suite" "$build/base-$suite.tar"
  docker import "$build/base-$suite.tar" "debian:$suite-slim"
  rm -f "$build/base-$suite.tar"
fi

# 3. The root filesystem image.
step "building image $image"
ctx=$build/rootfs-context
rm -rf "$ctx" && mkdir -p "$ctx"
cp -a "$src/rootfs/Dockerfile" "$src/rootfs/packages" "$src/rootfs/prune-modules.sh" \
  "$src/rootfs/prune-firmware.sh" "$src/rootfs/finish.sh" "$src/rootfs/overlay" "$ctx/"
cp "$bin" "$ctx/lightwhale"
# The Docker stack, built from source (dockerstack/build.sh); the Makefile
# builds it once under build/dockerstack (DOCKERSTACK), or it is built here.
stack=${DOCKERSTACK:-$src/build/dockerstack}
if [ ! -f "$stack/versions" ]; then
  step "building the Docker stack from source into $stack"
  "$src/dockerstack/build.sh" "$stack"
fi
mkdir "$ctx/dockerstack"
cp "$stack/docker-multicall" "$stack/containerd" "$stack/containerd-shim-runc-v2" \
  "$stack/docker-proxy" "$stack/runc" "$stack/versions" "$ctx/dockerstack/"
docker build --network host --build-arg "VERSION=$version" --build-arg "SUITE=$suite" \
  --build-arg "SOURCES=$sources" --build-arg "SECURITY=$security" -t "$image" "$ctx"

# 3b. A user's own image on top of ours (make iso CUSTOM=path/to/Dockerfile,
# whose FROM is lightwhale:VERSION): its build context is its directory.
if [ -n "${CUSTOM:-}" ]; then
  step "building your image from $CUSTOM"
  docker build --network host --build-arg "VERSION=$version" -t "lightwhale-custom:$version" -f "$CUSTOM" "$(dirname "$CUSTOM")"
  image=lightwhale-custom:$version
fi

# 4. Its files. What Docker bind-mounts into every container (hostname, hosts,
# resolv.conf) is replaced by what a booted machine needs.
step "exporting the image"
root=$build/rootfs
rm -rf "$root" && mkdir -p "$root"
cid=$(docker create "$image" /bin/true)
docker export "$cid" | tar -x -C "$root"
docker rm "$cid" >/dev/null
rm -f "$root/.dockerenv" "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
ln -sfn ../run/resolv.conf "$root/etc/resolv.conf"

# 5. The kernel and the UEFI boot chain go to the ISO, not into the squashfs.
iso=$build/iso-root efi=$build/efi
rm -rf "$iso" "$efi" && mkdir -p "$iso/boot/grub"
mv "$root/boot/vmlinuz" "$iso/boot/vmlinuz"
mv "$root/boot/efi" "$efi"
rm -rf "${root:?}/boot/"*
kver=$(ls "$root/usr/lib/modules")

# Secure Boot: an image that could not boot with it on is never made.
step "checking signatures"
"$src/iso/check-signed.sh" "$root/usr/lib/modules/$kver" "$efi/bootx64.efi" "$efi/grubx64.efi" "$iso/boot/vmlinuz"

# 5b. The key the image trusts to sign its upgrades (paths.UpgradeKeys).
if [ -n "${SIGN_KEY:-}" ]; then
  keyname=$(basename "$SIGN_KEY" .pem | tr -c 'A-Za-z0-9._\n-' _)
  mkdir -p "$root/usr/share/lightwhale/upgrade-keys"
  openssl pkey -in "$SIGN_KEY" -pubout -out "$root/usr/share/lightwhale/upgrade-keys/$keyname.pem"
fi

# 6. The root squashfs goes on the ISO, beside the kernel: stage 1 copies it
# into RAM from there. The initramfs: /init (our binary), the modules that
# mount the medium and the squashfs, the drivers of the buses a medium sits
# on (loaded only for the devices present), and the squashfs's ID.
step "making the squashfs"
squashfs=$iso/lightwhale/rootfs.squashfs
mkdir -p "$(dirname "$squashfs")"
# zstd: under emulation it decompresses about 3.5 times as fast as xz, which
# makes Docker answer about 15 s sooner, for 13 % more bytes;
# SQUASHFS_COMP=xz makes the smaller ISO (the README's bench has both).
# 1 MiB blocks: with 128 KiB ones the ISO grew 10 % and, under TCG, Docker
# answered 5 s later (more, smaller reads of the medium).
case ${SQUASHFS_COMP:-zstd} in
  xz) comp=(-comp xz -Xbcj x86) ;;
  zstd) comp=(-comp zstd -Xcompression-level 19) ;;
  # Test-only images (make test's upgrade ISOs): quick to make, not shipped.
  fast) comp=(-comp zstd -Xcompression-level 3) ;;
  *) echo "iso/build.sh: SQUASHFS_COMP=$SQUASHFS_COMP: want xz, zstd or fast" >&2; exit 1 ;;
esac
mksquashfs "$root" "$squashfs" -noappend -no-progress -quiet "${comp[@]}" -b 1M

step "building the initramfs"
initrd=$build/initramfs
rm -rf "$initrd" && mkdir -p "$initrd"/{dev,proc,sys,run,newroot,etc,lib/modules/"$kver"}
mknod -m 600 "$initrd/dev/console" c 5 1
cp "$bin" "$initrd/init"
grep -v '^#' "$src/iso/stage1-modules" > "$initrd/etc/modules"
# What stage 1 looks for on the medium: the size and the sha256 of the
# first 64 KiB (applets/stage1, RootfsID).
echo "$(stat -c %s "$squashfs") $(head -c 65536 "$squashfs" | sha256sum | cut -d' ' -f1)" > "$initrd/etc/rootfs.id"
cp "$root/usr/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$initrd/lib/modules/$kver/"
grep -hv '^#' "$src/iso/stage1-modules" "$src/iso/stage1-drivers" | while read -r m; do
  # "insmod /lib/modules/KVER/kernel/.../x.ko" for each module and its deps.
  modprobe -d "$root" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
done | sort -u | while read -r ko; do
  rel=${ko#*/lib/modules/$kver/}
  mkdir -p "$(dirname "$initrd/lib/modules/$kver/$rel")"
  cp "$root/usr/lib/modules/$kver/$rel" "$initrd/lib/modules/$kver/$rel"
done
depmod -b "$initrd" "$kver"
(cd "$initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | zstd -q -19 -T0 > "$iso/boot/initrd.img"

# 6b. The manifest `lightwhale upgrade` checks (applets/upgrade): the
# version, then the size and sha256 of the kernel, initramfs and root image;
# signed when SIGN_KEY is set (the raw 64-byte ed25519 signature).
step "writing the manifest"
manifest=$iso/lightwhale/manifest
{
  echo "lightwhale-manifest 1"
  echo "version $version"
  for f in boot/vmlinuz boot/initrd.img lightwhale/rootfs.squashfs; do
    echo "sha256 $(sha256sum "$iso/$f" | cut -d' ' -f1) $(stat -c %s "$iso/$f") $f"
  done
} > "$manifest"
rm -f "$manifest.sig"
if [ -n "${SIGN_KEY:-}" ]; then
  openssl pkeyutl -sign -rawin -inkey "$SIGN_KEY" -in "$manifest" -out "$manifest.sig"
fi

# 7. The hybrid ISO, laid out as grub-mkrescue does, but with Debian's signed
# UEFI chain. Persistence recognises the boot medium by the LIGHTWHALE
# volume label; Debian's CD GRUB finds it by /.disk/info.
step "making the ISO"
sed "s/@VERSION@/$version/g" "$src/iso/grub.cfg" > "$iso/boot/grub/grub.cfg"
mkdir -p "$iso/.disk" && echo "Lightwhale $version" > "$iso/.disk/info"
# BIOS: one GRUB El Torito image with the few modules grub.cfg uses built
# in (no module directory, no fonts, locales or themes).
grub-mkimage -O i386-pc-eltorito -p /boot/grub -o "$iso/boot/grub/eltorito.img" \
  biosdisk iso9660 part_msdos normal configfile linux serial terminal echo test boot
# UEFI: a FAT image with shim as the removable-media loader; shim runs
# grubx64.efi (or mmx64.efi to enrol a key) from its own directory.
efiimg=$iso/boot/grub/efi.img
kib=$(( $(du -ck "$efi"/*.efi | tail -1 | cut -f1) + 512 ))
rm -f "$efiimg" && mkfs.vfat -C -n LWEFI "$efiimg" "$kib" >/dev/null
mmd -i "$efiimg" ::/EFI ::/EFI/boot
mcopy -i "$efiimg" "$efi/bootx64.efi" "$efi/grubx64.efi" "$efi/mmx64.efi" ::/EFI/boot/
xorriso -as mkisofs -quiet -r -volid "LIGHTWHALE_${version//[^0-9A-Za-z]/_}" -o "$out.tmp" \
  -b boot/grub/eltorito.img -no-emul-boot -boot-load-size 4 -boot-info-table --grub2-boot-info \
  --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
  --efi-boot boot/grub/efi.img -efi-boot-part --efi-boot-image --protective-msdos-label \
  "$iso"
mv "$out.tmp" "$out"
step "done: $out ($(du -h "$out" | cut -f1))"
