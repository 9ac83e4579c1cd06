package sfu

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// pionlogRecorder is a slog.Handler that keeps every record it is handed.
type pionlogRecorder struct {
	level slog.Level
	attrs []slog.Attr
	mu    *sync.Mutex
	recs  *[]pionlogRecord
}

type pionlogRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
	file  string
}

func newPionlogRecorder(level slog.Level) *pionlogRecorder {
	return &pionlogRecorder{level: level, mu: new(sync.Mutex), recs: new([]pionlogRecord)}
}

func (h *pionlogRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *pionlogRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := pionlogRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.String(); return true })
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		rec.file = filepath.Base(f.File)
	}
	h.mu.Lock()
	*h.recs = append(*h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *pionlogRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

func (h *pionlogRecorder) WithGroup(string) slog.Handler { return h }

func (h *pionlogRecorder) records() []pionlogRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]pionlogRecord(nil), *h.recs...)
}

func TestPionLoggerLevels(t *testing.T) {
	h := newPionlogRecorder(slog.Level(-100))
	l := NewLoggerFactory(slog.New(h)).NewLogger("ice")

	l.Trace("t")
	l.Tracef("t%d", 1)
	l.Debug("d")
	l.Debugf("d%d", 1)
	l.Info("i")
	l.Infof("i%d", 1)
	l.Warn("w")
	l.Warnf("w%d", 1)
	l.Error("e")
	l.Errorf("e%d", 1)

	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelDebug - 4, "t"}, {slog.LevelDebug - 4, "t1"},
		{slog.LevelDebug, "d"}, {slog.LevelDebug, "d1"},
		{slog.LevelDebug, "i"}, {slog.LevelDebug, "i1"},
		{slog.LevelWarn, "w"}, {slog.LevelWarn, "w1"},
		{slog.LevelError, "e"}, {slog.LevelError, "e1"},
	}
	got := h.records()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.level != w.level || g.msg != w.msg {
			t.Errorf("record %d = %v %q, want %v %q", i, g.level, g.msg, w.level, w.msg)
		}
		if g.attrs["scope"] != "ice" {
			t.Errorf("record %d scope = %q, want ice", i, g.attrs["scope"])
		}
		if g.file != "pionlog_test.go" {
			t.Errorf("record %d source = %q, want the caller's file pionlog_test.go", i, g.file)
		}
	}
}

type countingStringer struct{ n *int }

func (c countingStringer) String() string { *c.n++; return "x" }

func TestPionLoggerFiltersAndSkipsFormatting(t *testing.T) {
	h := newPionlogRecorder(slog.LevelInfo)
	l := NewLoggerFactory(slog.New(h)).NewLogger("dtls")

	calls := 0
	s := countingStringer{&calls}
	l.Tracef("%v", s)
	l.Debugf("%v", s)
	l.Infof("%v", s) // pion Info is slog Debug: filtered at Info
	l.Trace("x")
	l.Debug("x")
	l.Info("x")
	if calls != 0 {
		t.Errorf("disabled messages were formatted %d times", calls)
	}
	if got := h.records(); len(got) != 0 {
		t.Errorf("disabled levels logged: %+v", got)
	}

	l.Warnf("warn %v", s)
	l.Errorf("err %v", s)
	got := h.records()
	if len(got) != 2 || got[0].msg != "warn x" || got[1].msg != "err x" || calls != 2 {
		t.Errorf("records %+v, formatted %d times", got, calls)
	}
}

func TestPionLoggerTextOutput(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("room", "r1")
	f := NewLoggerFactory(base)
	f.NewLogger("sctp").Warnf("association %s failed\n", "a1")
	f.NewLogger("ice").Info("checking")
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="association a1 failed" room=r1 scope=sctp`,
		`level=DEBUG msg=checking room=r1 scope=ice`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestNewLoggerFactoryNil(t *testing.T) {
	l := NewLoggerFactory(nil).NewLogger("x")
	l.Tracef("not shown by the default logger %d", 1) // must not panic
}

// pion's errors about a connection being torn down are warnings: a leave or
// a kick is no server fault (issue 17's soak counts the server's errors).
func TestPionLoggerTeardownIsWarn(t *testing.T) {
	h := newPionlogRecorder(slog.LevelDebug)
	l := NewLoggerFactory(slog.New(h)).NewLogger("pc")
	l.Errorf("Incoming unhandled RTP ssrc(%d), OnTrack will not be fired. %v", 42, "EOF")
	l.Error("Failed to write packet: io: read/write on closed pipe")
	l.Errorf("Incoming unhandled RTP ssrc(%d), OnTrack will not be fired. %v", 43, "incoming SSRC failed Simulcast probing")
	l.Error("Failed to start SCTP: DTLS not established")
	got := h.records()
	if len(got) != 4 || got[0].level != slog.LevelWarn || got[1].level != slog.LevelWarn || got[2].level != slog.LevelWarn || got[3].level != slog.LevelError {
		t.Fatalf("levels: %+v", got)
	}
}
