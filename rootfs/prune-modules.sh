#!/bin/sh
# Keeps only the kernel modules a container server needs, plus everything they
# depend on (modules.dep lists the full closure), and rebuilds modules.dep.
set -eu
cd /usr/lib/modules/*/
kver=$(basename "$PWD")
depmod "$kver" # the package ships no modules.dep: its postinst makes it

# Paths as in modules.dep (kernel/...): a whitelist of what a container
# server boots on, by class, and everything it depends on.
#  - storage: virtio, AHCI/ATA, NVMe, USB and MMC/SD, the SCSI disk/CD layers
#    and the HBAs of home servers (LSI/Broadcom, Adaptec, HP), md/dm;
#  - NICs: virtual ones (virtio, Hyper-V, Xen, VMware, AWS, GCE), Intel,
#    Realtek, Broadcom, Mellanox ConnectX, Aquantia, Atheros, Marvell sky2,
#    Synopsys (stmmac), AMD; USB NICs; wifi for the firmware we ship (Intel
#    iwlwifi, Realtek rtw88/rtw89) and Atheros ath9k, which needs none, plus
#    mac80211_hwsim for tests;
#  - the network stack with netfilter, bridge, veth, vxlan, macvlan, ipvlan,
#    wireguard, bonding for Docker; the filesystems we use; crypto and lib;
#    keyboards, the hypervisor drivers and watchdogs. No floppy and no PS/2
#    mouse: a server has neither, and their probes cost a boot under QEMU,
#    whose PC has both, about a second.
keep='^kernel/(arch/x86/crypto|crypto|lib|net|fs/(btrfs|overlayfs|squashfs|fat|exfat|ext4|jbd2|isofs|fuse|efivarfs)|fs/mbcache\.ko|fs/nls/nls_(utf8|cp437|iso8859-1|ascii)\.ko|drivers/(block|ata|nvme|virtio|input|char|md|mmc|hv|xen|pci|cdrom|ptp|pps|dca|watchdog|misc|message/fusion)|drivers/scsi/(sd_mod|sr_mod|sg|ses|virtio_scsi|vmw_pvscsi|hv_storvsc|xen-scsifront|hpsa|raid_class|scsi_transport_sas|scsi_transport_spi)\.ko|drivers/scsi/(megaraid|mpt3sas|aacraid|device_handler)/|drivers/usb/(core|host|storage|common|class)/|drivers/hid/(hid|hid-generic)\.ko|drivers/hid/usbhid/|drivers/net/(phy|pcs|mdio|usb|hyperv|vxlan|wireguard|bonding|ipvlan|team)/|drivers/net/[^/]*\.ko|drivers/net/ethernet/(intel|realtek|mellanox/(mlx4|mlx5)|aquantia|atheros|amazon|google|marvell/sky2|stmicro|amd|broadcom/(tg3|bnx2|bnxt/))|drivers/net/wireless/(intel/iwlwifi|realtek/(rtw88|rtw89)|ath/ath9k|ath/ath\.ko|virtual/mac80211_hwsim))'
# drop names directories and single modules (.ko); what a kept module
# depends on stays anyway.
drop='^kernel/(lib/test_|drivers/block/floppy\.ko|(net/(dccp|bluetooth|can|nfc|ieee802154|mac802154|ceph|sunrpc|rxrpc|9p|rds|atm|tipc|sctp|smc|phonet|batman-adv|openvswitch|l2tp|mpls|hsr|dsa|ax25|rose|netrom|x25|lapb|llc2|caif|qrtr|6lowpan|appletalk|nsh)|drivers/(md/(bcache|dm-vdo|md-cluster)|char/(ipmi|tpm/st33zp24)|net/ethernet/intel/(ice|idpf|iavf)|input/(touchscreen|joystick|tablet|misc|mouse)|xen/xen-[a-z]*back|block/(rbd|drbd|rnbd|aoe)|nvme/target|nvme/host/nvme-(rdma|fc)))(/|\.ko))'

awk -F: -v keep="$keep" -v drop="$drop" '
  $1 ~ keep && $1 !~ drop { print $1; n = split($2, d, " "); for (i = 1; i <= n; i++) print d[i] }
' modules.dep | sort -u > /tmp/keep.list
find kernel -name '*.ko*' | sort | comm -23 - /tmp/keep.list | xargs rm -f
find kernel -type d -empty -delete
rm -f /tmp/keep.list
# Stored uncompressed: squashfs compresses them better as a whole, and
# loading skips a decompression per module.
find kernel -name '*.ko.xz' -exec busybox xz -d {} +
depmod "$kver"
echo "prune-modules: kept $(find kernel -name '*.ko*' | wc -l) modules, $(du -sh kernel | cut -f1)"
