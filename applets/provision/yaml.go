package provision

import (
	"bytes"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Caps on what a seed may hold. A cloud-config with inline files rarely
// passes a few hundred KiB; these stop a huge or hostile seed from eating
// the RAM of a machine whose root filesystem already lives in RAM.
const (
	maxUserData      = 1 << 20 // 1 MiB, like a cloud provider's user-data limit (AWS: 16 KiB, GCE: 256 KiB)
	maxMetaData      = 64 << 10
	maxNetworkConfig = 256 << 10
	maxFileContent   = 1 << 20 // one write_files entry, after base64/gzip decoding
	maxYAMLNodes     = 20000   // no real cloud-config has this many scalars
	maxYAMLDepth     = 32
)

// parseYAML parses one YAML document into a node tree and rejects what we
// never want to evaluate: aliases (the "billion laughs" bomb expands them;
// cloud-configs do not need them), duplicate keys (YAML forbids them and a
// second "ssh_pwauth" must not silently win), too many nodes or too deep a
// tree, and more than one document.
func parseYAML(what string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: invalid YAML: %w", what, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s: more than one YAML document", what)
	}
	if doc.Kind == 0 { // empty file
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	count := 0
	if err := checkNode(what, &doc, 0, &count); err != nil {
		return nil, err
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: expected a mapping of keys at the top, line %d", what, root.Line)
	}
	return root, nil
}

func checkNode(what string, n *yaml.Node, depth int, count *int) error {
	*count++
	switch {
	case *count > maxYAMLNodes:
		return fmt.Errorf("%s: more than %d YAML nodes", what, maxYAMLNodes)
	case depth > maxYAMLDepth:
		return fmt.Errorf("%s: nested deeper than %d levels at line %d", what, maxYAMLDepth, n.Line)
	case n.Kind == yaml.AliasNode || n.Anchor != "":
		return fmt.Errorf("%s: YAML anchors and aliases are not supported (line %d)", what, n.Line)
	}
	if n.Kind == yaml.MappingNode {
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if first, dup := seen[k.Value]; dup {
				return fmt.Errorf("%s: duplicate key %q at line %d (first at line %d)", what, k.Value, k.Line, first)
			}
			seen[k.Value] = k.Line
		}
	}
	for _, c := range n.Content {
		if err := checkNode(what, c, depth+1, count); err != nil {
			return err
		}
	}
	return nil
}

// field is one key of a mapping node.
type field struct {
	key   string
	value *yaml.Node
}

func fields(n *yaml.Node) []field {
	var out []field
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, field{n.Content[i].Value, n.Content[i+1]})
	}
	return out
}

// errs collects one line per problem, each naming its key.
type errs []string

func (e *errs) add(format string, a ...any) { *e = append(*e, fmt.Sprintf(format, a...)) }

func (e errs) err() error {
	if len(e) == 0 {
		return nil
	}
	var b bytes.Buffer
	for i, l := range e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return errors.New(b.String())
}

// decode decodes a node into v, naming the key on failure.
func decode(e *errs, key string, n *yaml.Node, v any) bool {
	if err := n.Decode(v); err != nil {
		e.add("%s: %v", key, unwrapYAML(err))
		return false
	}
	return true
}

// unwrapYAML drops yaml.v3's multi-line "yaml: unmarshal errors:" framing.
func unwrapYAML(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return te.Errors[0]
	}
	return err.Error()
}
