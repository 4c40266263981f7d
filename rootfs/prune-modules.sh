#!/bin/sh
# Keeps only the kernel modules a container server needs, plus everything they
# depend on (modules.dep lists the full closure), and rebuilds modules.dep.
set -eu
cd /usr/lib/modules/*/
kver=$(basename "$PWD")
depmod "$kver" # the package ships no modules.dep: its postinst makes it

# Paths as in modules.dep (kernel/...). Keep: storage (virtio, AHCI/ATA, SCSI,
# NVMe, USB, MMC, md), NICs incl. wifi and mac80211_hwsim (drivers/net), the
# network stack with netfilter/bridge/veth for Docker (net/), the filesystems
# we use, crypto and library code they pull in, input for console keyboards,
# hypervisor drivers (virtio, Hyper-V, Xen, VMware's vmci/vmxnet/pvscsi).
keep='^kernel/(arch/x86/crypto|crypto|lib|net|fs/(btrfs|overlayfs|squashfs|fat|exfat|ext4|jbd2|isofs|nls|fuse)|fs/mbcache\.ko|drivers/(block|ata|scsi|nvme|virtio|net|usb|hid|input|char|md|mmc|message|hv|xen|misc|pci|cdrom|ptp|pps|dca|watchdog))/?'
drop='^kernel/(net/(bluetooth|can|nfc|ieee802154|mac802154|ceph|sunrpc|rxrpc|9p|rds|atm|tipc|sctp|smc|phonet)|drivers/(usb/(gadget|serial|misc|image)|net/(can|wwan|ieee802154|hamradio|arcnet|fddi|plip|slip|appletalk|fjes)|input/(touchscreen|joystick|tablet|misc)|scsi/(fcoe|qla2xxx|qla4xxx|lpfc|bfa|be2iscsi|bnx2fc|bnx2i|cxgbi|csiostor|qedf|qedi|libfc|libfcoe|elx|smartpqi|mpi3mr|pm8001)|infiniband|media|gpu))/'

awk -F: -v keep="$keep" -v drop="$drop" '
  $1 ~ keep && $1 !~ drop { print $1; n = split($2, d, " "); for (i = 1; i <= n; i++) print d[i] }
' modules.dep | sort -u > /tmp/keep.list
find kernel -name '*.ko*' | sort | comm -23 - /tmp/keep.list | xargs rm -f
find kernel -type d -empty -delete
rm -f /tmp/keep.list
depmod "$kver"
echo "prune-modules: kept $(find kernel -name '*.ko*' | wc -l) modules, $(du -sh kernel | cut -f1)"
