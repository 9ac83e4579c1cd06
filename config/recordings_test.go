package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRecordingsDirPrecedence(t *testing.T) {
	c, err := load(nil, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Recordings.Dir != "./recordings" {
		t.Fatalf("default dir %q", c.Recordings.Dir)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("recordings:\n  dir: /from/file\n  auto_record: [\"class-*\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = load([]string{"--config", file}, nil, noEnv)
	if err != nil || c.Recordings.Dir != "/from/file" || len(c.Recordings.AutoRecord) != 1 {
		t.Fatalf("file: %+v %v", c.Recordings, err)
	}
	env := func(k string) string {
		if k == EnvRecordingsDir {
			return "/from/env"
		}
		return ""
	}
	c, err = load([]string{"--config", file}, nil, env)
	if err != nil || c.Recordings.Dir != "/from/env" {
		t.Fatalf("env: %+v %v", c.Recordings, err)
	}
	c, err = load([]string{"--config", file, "--recordings-dir", "/from/flag", "--auto-record", "a*,b", "--recordings-compose"}, nil, env)
	if err != nil || c.Recordings.Dir != "/from/flag" || len(c.Recordings.AutoRecord) != 2 || !c.Recordings.Compose {
		t.Fatalf("flag: %+v %v", c.Recordings, err)
	}
	if _, err := load([]string{"--auto-record", "[bad"}, nil, noEnv); err == nil {
		t.Fatal("a bad pattern must be rejected")
	}
}
