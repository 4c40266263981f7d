// Package modalias matches device modaliases to kernel modules, as
// modprobe resolves them from modules.alias: the hotplug daemon and stage 1
// load the drivers of the devices present by it.
package modalias

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Aliases is modules.alias indexed for lookup: each pattern is filed under
// its literal prefix (the text before the first wildcard), so a modalias is
// matched only against the patterns whose prefix it starts with. A linear
// scan of the ~30,000 patterns of a Debian kernel for every device costs
// seconds under TCG; this costs one map lookup per character.
type Aliases struct {
	byPrefix map[string][]aliasRule
}

type aliasRule struct {
	pattern, module string
}

// Parse reads modules.alias ("alias PATTERN MODULE" lines; comments
// and blank lines are skipped).
func Parse(r io.Reader) (*Aliases, error) {
	a := &Aliases{byPrefix: map[string][]aliasRule{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("modules.alias line %d: want \"alias PATTERN MODULE\", got %q", n, line)
		}
		if _, err := path.Match(f[1], ""); err != nil {
			return nil, fmt.Errorf("modules.alias line %d: bad pattern %q: %w", n, f[1], err)
		}
		p := literalPrefix(f[1])
		a.byPrefix[p] = append(a.byPrefix[p], aliasRule{pattern: f[1], module: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.alias: %w", err)
	}
	return a, nil
}

func literalPrefix(pattern string) string {
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		return pattern[:i]
	}
	return pattern
}

// Lookup returns the modules whose alias pattern matches modalias (sorted,
// each once), as modprobe resolves an alias: every match, not just the first.
func (a *Aliases) Lookup(modalias string) []string {
	seen := map[string]bool{}
	for i := 0; i <= len(modalias); i++ {
		for _, r := range a.byPrefix[modalias[:i]] {
			// Patterns are fnmatch(3) globs; modaliases hold no '/', so
			// path.Match's special slash never matters.
			if ok, _ := path.Match(r.pattern, modalias); ok {
				seen[r.module] = true
			}
		}
	}
	return sortedKeys(seen)
}

// Scan reads the modalias of every device under sys (/sys), each once,
// sorted: from its modalias file, or from the MODALIAS= of its uevent file
// (an SD card has no modalias file; its driver would never be asked for).
func Scan(sys string) []string {
	seen := map[string]bool{}
	filepath.WalkDir(filepath.Join(sys, "devices"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() != "modalias" && d.Name() != "uevent" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		text := string(b)
		if d.Name() == "uevent" {
			text = ""
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "MODALIAS="); ok {
					text = v
				}
			}
		}
		if m := strings.TrimSpace(text); m != "" {
			seen[m] = true
		}
		return nil
	})
	return sortedKeys(seen)
}

// Modules resolves modaliases to the modules that drive them, each once,
// sorted.
func (a *Aliases) Modules(modaliases []string) []string {
	set := map[string]bool{}
	for _, m := range modaliases {
		for _, mod := range a.Lookup(m) {
			set[mod] = true
		}
	}
	return sortedKeys(set)
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
