#!/bin/sh
# Keeps the firmware most machines Lightwhale boots on need, and drops the
# rest of what the firmware packages install:
#  - Intel wifi (iwlwifi): only the newest firmware API of each device family
#    (the driver asks for the newest it knows first, then older ones), and
#    the PNVM files of the families kept;
#  - Realtek: wired NICs (rtl_nic) and the rtw88/rtw89 wifi chips.
# Files are stored uncompressed: squashfs compresses them better as a whole.
set -eu
cd /usr/lib/firmware

# Decompress first, so names compare without suffixes.
find . -name "*.xz" -exec busybox xz -d {} +

# iwlwifi-<family>-<api>.ucode: keep the highest <api> per <family>.
ls iwlwifi-*.ucode 2>/dev/null | sed -n 's/^\(.*\)-\([0-9]\{1,\}\)\.ucode$/\1 \2 &/p' |
  sort -k1,1 -k2,2nr | awk 'seen[$1]++ { print $3 }' | xargs -r rm -f

# rtw89/<chip>_fw[-<format>].bin: keep the highest format per chip (the
# driver asks for it first). rtw88: no wake-on-WLAN images.
ls rtw89/*_fw*.bin 2>/dev/null | sed -n 's/^\(.*_fw\)\(-\([0-9]\{1,\}\)\)\{0,1\}\.bin$/\1 \3 &/p' |
  awk '{ if (NF == 2) { $3 = $2; $2 = 0 } print }' | sort -k1,1 -k2,2nr | awk 'seen[$1]++ { print $NF }' | xargs -r rm -f
rm -f rtw88/*_wow_*

# Only what the list above names: no Bluetooth (intel/ibt, rtl_bt), no
# older Realtek wifi, no licence texts, nothing else the packages carry;
# then no links left pointing at what went.
find . -mindepth 1 -maxdepth 1 ! -name 'iwlwifi-*' ! -name rtl_nic ! -name rtw88 ! -name rtw89 -exec rm -rf {} +
find . -xtype l -delete
find . -type d -empty -delete
echo "prune-firmware: kept $(find . -type f | wc -l) files, $(du -sh . | cut -f1)"
