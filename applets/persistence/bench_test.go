package persistence

import (
	"fmt"
	"testing"
)

// BenchmarkClaim measures a first boot's claim of 1 and 2 fresh 8 GiB magic
// disks on loop devices (partition, mkswap, mkfs, subvolumes, mount,
// overlays), the setup excluded. Run: make bench, or
// go test -run '^$' -bench Claim ./applets/persistence/
func BenchmarkClaim(b *testing.B) {
	needRoot(b)
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprint(n, "-disks"), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				var disks []*loopDisk
				for j := 0; j < n; j++ {
					disks = append(disks, newDisk(b, 8<<10, 512, header))
				}
				ns := newNamespace(b)
				b.StartTimer()
				ns.mustStart(disks...)
				b.StopTimer()
				ns.close()
				for _, d := range disks {
					d.detach()
				}
			}
		})
	}
}
