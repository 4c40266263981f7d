package hotplug

import (
	"bufio"
	"fmt"
	"io"
	"path"
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

// ParseAliases reads modules.alias ("alias PATTERN MODULE" lines; comments
// and blank lines are skipped).
func ParseAliases(r io.Reader) (*Aliases, error) {
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
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
