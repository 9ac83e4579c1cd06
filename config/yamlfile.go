package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML configuration file (--config): read onto the defaults before the
// environment and the flags given, unknown keys refused by name.

var unknownFieldRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type `)

// loadFile overlays the YAML file at path onto c. Keys missing from the file
// keep their current value; unknown keys are an error naming the key.
func (c *Config) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err = dec.Decode(c)
	if errors.Is(err, io.EOF) { // empty file
		return nil
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var root yaml.Node
		_ = yaml.Unmarshal(data, &root)
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = m
			if sm := unknownFieldRE.FindStringSubmatch(m); sm != nil {
				line, _ := strconv.Atoi(sm[1])
				key := sm[2]
				if p := keyPath(&root, line, key, ""); p != "" {
					key = p
				}
				msgs[i] = fmt.Sprintf("line %d: unknown key %q", line, key)
			}
		}
		return fmt.Errorf("config file %s:\n  %s", path, strings.Join(msgs, "\n  "))
	}
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// keyPath finds the mapping key named key on line and returns its dotted
// path ("rtc.udp_prot"), or "" if not found.
func keyPath(n *yaml.Node, line int, key, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := prefix
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", prefix, i)
			}
			if r := keyPath(c, line, key, p); r != "" {
				return r
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if k.Line == line && k.Value == key {
				return p
			}
			if r := keyPath(n.Content[i+1], line, key, p); r != "" {
				return r
			}
		}
	}
	return ""
}
