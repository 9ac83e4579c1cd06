package testutil

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// StarlingBinary returns the path of the starling binary, built by the go
// command into its build cache: go.mod lists cmd/starling as a tool, and
// `go tool -n starling` builds it if need be and prints where it is. The
// tests that run the binary (cmd/starling, web/browsertest) used to build
// it each with `go build -o`, which links it again every time (seconds on
// a busy machine, on every go test run); the cached one is linked once per
// source change and shared by both test processes. The binary is the
// build cache's: run it, never move or remove it. dir is any folder of the
// module.
func StarlingBinary(goTool, dir string) (string, error) {
	cmd := exec.Command(goTool, "tool", "-n", "starling")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n starling: %v\n%s", err, stderr.String())
	}
	path := strings.TrimSpace(string(out))
	if path == "" || strings.ContainsAny(path, " \n") {
		return "", fmt.Errorf("go tool -n starling printed %q, want the binary's path", out)
	}
	return path, nil
}
