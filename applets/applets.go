// Package applets is the registry of the multicall binary: it maps the name
// the binary was invoked as (or its first argument) to an applet's Main.
package applets

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"lightwhale/internal/cli"
)

// Applet is one command of the multicall binary.
type Applet struct {
	Name    string
	Aliases []string // other names it answers to, e.g. S11persistence
	Summary string
	Main    func(args []string, stdio cli.IO) int
}

// registry is filled by the init() in all.go, one line per applet.
var registry []Applet

func lookup(name string) (Applet, bool) {
	for _, a := range registry {
		if a.Name == name {
			return a, true
		}
		for _, alias := range a.Aliases {
			if alias == name {
				return a, true
			}
		}
	}
	return Applet{}, false
}

// Run dispatches argv: on basename(argv[0]) when it names an applet, else on
// argv[1] ("lightwhale <applet> ..."). It returns the exit code.
func Run(argv []string, stdio cli.IO) int {
	name := "lightwhale"
	if len(argv) > 0 {
		name = filepath.Base(argv[0])
	}
	if a, ok := lookup(name); ok {
		return a.Main(argv[1:], stdio)
	}
	if len(argv) < 2 || argv[1] == "--help" || argv[1] == "-h" || argv[1] == "help" {
		usage(stdio)
		if len(argv) < 2 {
			return 2
		}
		return 0
	}
	if a, ok := lookup(argv[1]); ok {
		return a.Main(argv[2:], stdio)
	}
	fmt.Fprintf(stdio.Err, "lightwhale: unknown applet %q (run \"lightwhale --help\" for the list)\n", argv[1])
	return 2
}

func usage(stdio cli.IO) {
	fmt.Fprintln(stdio.Out, "usage: lightwhale <applet> [args...]   (or run it through a link named after the applet)")
	fmt.Fprintln(stdio.Out, "\napplets:")
	sorted := append([]Applet(nil), registry...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, a := range sorted {
		names := a.Name
		if len(a.Aliases) > 0 {
			names += " (" + strings.Join(a.Aliases, ", ") + ")"
		}
		fmt.Fprintf(stdio.Out, "  %-40s %s\n", names, a.Summary)
	}
}
