package applets

import (
	"fmt"

	"lightwhale/internal/cli"
	"lightwhale/internal/version"
)

// One line per applet; the links in the rootfs are made from these names.
func init() {
	registry = []Applet{
		{Name: "version", Summary: "print the Lightwhale version", Main: func(_ []string, s cli.IO) int {
			fmt.Fprintln(s.Out, version.Version)
			return 0
		}},
	}
}
