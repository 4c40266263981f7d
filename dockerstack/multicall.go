//go:build ignore

// build.sh adds this file to the busybox's main package, without the line
// above (which keeps it out of this repository's own Go build). Its init
// runs after every library's init and before a command is picked.
package main

import (
	"io"
	"os"

	"github.com/moby/sys/reexec"
	"google.golang.org/grpc/grpclog"
)

func init() {
	// dockerd re-executes itself under other names (BuildKit's network hook
	// runs /proc/PID/exe as libnetwork-setkey): those are not commands of
	// the busybox, but functions that dockerd's libraries registered.
	if reexec.Init() {
		os.Exit(0)
	}
	// Swarmkit's init hands gRPC's log to logrus at info level, which the
	// CLI and its plugins would print; give them gRPC's default back (errors
	// only). dockerd sets its own when it starts.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
}
