package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestResumeWindow(t *testing.T) {
	noEnv := func(string) string { return "" }
	if d := Default().Room.ResumeWindow.Std(); d != 30*time.Second {
		t.Fatalf("default resume window %v, want 30s", d)
	}
	c, err := load([]string{"--resume-window", "5s"}, io.Discard, noEnv)
	if err != nil || c.Room.ResumeWindow.Std() != 5*time.Second {
		t.Fatalf("--resume-window 5s: %v, %v", c.Room.ResumeWindow, err)
	}
	c, err = load([]string{"--resume-window=0"}, io.Discard, noEnv)
	if err != nil || c.Room.ResumeWindow != 0 {
		t.Fatalf("--resume-window=0 (off): %v, %v", c.Room.ResumeWindow, err)
	}
	if _, err := load([]string{"--resume-window=-1s"}, io.Discard, noEnv); err == nil || !strings.Contains(err.Error(), "room.resume_window -1s") {
		t.Fatalf("negative window: %v", err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("room:\n  resume_window: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = load([]string{"--config", path}, io.Discard, noEnv)
	if err != nil || c.Room.ResumeWindow.Std() != time.Minute {
		t.Fatalf("yaml resume_window 1m: %v, %v", c.Room.ResumeWindow, err)
	}
}
