// Command lightwhale is the multicall binary of the Lightwhale OS: it runs
// the applet named by the link it was started through, or by its first argument.
package main

import (
	"os"

	"lightwhale/applets"
	"lightwhale/internal/cli"
)

func main() { os.Exit(applets.Run(os.Args, cli.Std())) }
