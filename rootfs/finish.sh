#!/bin/sh
# Last configuration and trimming of the root filesystem, run by the
# Dockerfile after our overlay files are in place. $1 is the version.
set -eu
version=$1

echo "Lightwhale $version" > /etc/lightwhale-release
printf 'Lightwhale %s \\n \\l\n\n' "$version" > /etc/issue
rm -f /etc/issue.net

# busybox is init and fills in the tools Debian's minbase lacks (ip, udhcpc,
# vi, wget, poweroff, reboot, ...); it never replaces a real tool.
ln -sf /bin/busybox /sbin/init
busybox --list-full | while read -r p; do
  [ -e "/$p" ] || [ -L "/$p" ] || ln -s /bin/busybox "/$p"
done

# Our init scripts only: drop Debian's sysv/systemd service files.
find /etc/init.d -mindepth 1 ! -name 'rc[SK]' ! -name 'S[0-9][0-9]*' -exec rm -f {} +
rm -rf /etc/rc?.d /etc/systemd /usr/lib/systemd /etc/cron.* /etc/logrotate.d

# Never ship secrets or identities: host keys and machine-id are made at first boot.
rm -f /etc/ssh/ssh_host_* /var/lib/dbus/machine-id
: > /etc/machine-id

# sshd's PAM prints /etc/motd (ours is made at boot in /run); drop Debian's
# dynamic motd line so it is not printed twice, and its static motd.
sed -i '/pam_motd.so.*motd=\/run\/motd.dynamic/d' /etc/pam.d/sshd
ln -sf /run/lightwhale/motd /etc/motd
rm -f /etc/update-motd.d/*

# udhcpc's default script, under both names busybox builds use.
mkdir -p /etc/udhcpc
ln -sf /usr/share/udhcpc/default.script /etc/udhcpc/default.script

mkdir -p /mnt/lightwhale-data /var/log

# Packages pulled in as dependencies that nothing here runs: systemd's own
# programs (libsystemd0 stays), apt and its verifier. Their files go while
# dpkg still knows them.
for p in systemd libsystemd-shared apt sqv libapt-pkg7.0; do
  dpkg -L "$p" 2>/dev/null | while read -r f; do
    if [ -f "$f" ] || [ -L "$f" ]; then rm -f "$f"; fi
  done
done

# AppArmor: dockerd writes and loads its own profile, which includes only
# the abstractions and tunables; no other program's profile is loaded.
find /etc/apparmor.d -mindepth 1 -maxdepth 1 ! -name abi ! -name abstractions ! -name tunables -exec rm -rf {} +

# No package manager, database, docs, man pages, locales; nothing that only
# dpkg/debconf use (perl); no charset converters; no unused tools; no
# headers or static libraries (crun's package ships libcrun.a).
rm -rf /var/lib/apt /var/cache/* /var/lib/dpkg /var/log/* /etc/apt /etc/dpkg \
  /usr/bin/apt* /usr/bin/dpkg* /usr/sbin/dpkg* /usr/lib/apt /usr/lib/dpkg /usr/share/dpkg \
  /usr/sbin/policy-rc.d /usr/share/debconf /usr/share/perl* /usr/lib/x86_64-linux-gnu/perl* \
  /usr/bin/perl* /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale \
  /usr/share/lintian /usr/lib/x86_64-linux-gnu/gconv /usr/share/i18n \
  /usr/bin/dnet /usr/sbin/ovrouter /usr/lib/x86_64-linux-gnu/libperl.so* \
  /usr/bin/ctr /usr/bin/containerd-stress /usr/bin/containerd-shim /usr/bin/containerd-shim-runc-v1 \
  /usr/bin/btrfs-convert /usr/bin/btrfs-image /usr/bin/btrfs-find-root /usr/bin/btrfs-select-super \
  /usr/lib/x86_64-linux-gnu/libcrun.a /usr/include \
  /usr/lib/modules/*/modules.*.bin.tmp /tmp/* /root/.cache
