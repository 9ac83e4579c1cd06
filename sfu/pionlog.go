package sfu

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/pion/logging"
)

// levelPionTrace is the slog level pion's Trace messages are logged at.
const levelPionTrace = slog.LevelDebug - 4

// NewLoggerFactory adapts l to pion's logging.LoggerFactory, so pion's
// internal logs (ICE, DTLS, SCTP, ...) go through slog with an attribute
// scope=<pion scope>.
//
// pion is chatty, so its levels are shifted down: Trace becomes slog Debug-4
// (levelPionTrace), Debug and Info become slog Debug; Warn and Error stay Warn and
// Error. A nil l means slog.Default().
func NewLoggerFactory(l *slog.Logger) logging.LoggerFactory {
	if l == nil {
		l = slog.Default()
	}
	return slogPionFactory{l: l}
}

type slogPionFactory struct{ l *slog.Logger }

func (f slogPionFactory) NewLogger(scope string) logging.LeveledLogger {
	return &slogPionLogger{l: f.l.With("scope", scope)}
}

// slogPionLogger implements logging.LeveledLogger on top of slog.
type slogPionLogger struct{ l *slog.Logger }

var _ logging.LeveledLogger = (*slogPionLogger)(nil)

// log emits msg at level. It must be called directly by the exported method
// so the recorded source position is pion's call site.
func (p *slogPionLogger) log(level slog.Level, msg string) {
	ctx := context.Background()
	if !p.l.Enabled(ctx, level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // skip Callers, log and the exported method
	r := slog.NewRecord(time.Now(), level, strings.TrimRight(msg, "\n"), pcs[0])
	_ = p.l.Handler().Handle(ctx, r)
}

// enabled lets the *f methods skip formatting messages nobody will see.
func (p *slogPionLogger) enabled(level slog.Level) bool {
	return p.l.Enabled(context.Background(), level)
}

func (p *slogPionLogger) Trace(msg string) { p.log(levelPionTrace, msg) }

func (p *slogPionLogger) Tracef(format string, args ...any) {
	if p.enabled(levelPionTrace) {
		p.log(levelPionTrace, fmt.Sprintf(format, args...))
	}
}

func (p *slogPionLogger) Debug(msg string) { p.log(slog.LevelDebug, msg) }

func (p *slogPionLogger) Debugf(format string, args ...any) {
	if p.enabled(slog.LevelDebug) {
		p.log(slog.LevelDebug, fmt.Sprintf(format, args...))
	}
}

// Info is logged at slog Debug: pion's Info is too noisy for an operator.
func (p *slogPionLogger) Info(msg string) { p.log(slog.LevelDebug, msg) }

// Infof is logged at slog Debug, like Info.
func (p *slogPionLogger) Infof(format string, args ...any) {
	if p.enabled(slog.LevelDebug) {
		p.log(slog.LevelDebug, fmt.Sprintf(format, args...))
	}
}

func (p *slogPionLogger) Warn(msg string) { p.log(slog.LevelWarn, msg) }

func (p *slogPionLogger) Warnf(format string, args ...any) {
	if p.enabled(slog.LevelWarn) {
		p.log(slog.LevelWarn, fmt.Sprintf(format, args...))
	}
}

// Error is logged at slog Error, except what pion reports while a
// connection is being torn down (a read or write on a transport already
// closed, a probe of a new stream cut by EOF) and packets of a stream no
// negotiated track claims (pion's "Simulcast probing" of an SSRC that is
// not in the description and carries no MID/RID: a client still sending a
// track it has just unpublished): that is Warn, because a participant
// leaving, being kicked, renegotiating or sending what it did not declare
// is no server fault, and an operator alerting on errors must not be woken
// by it (the soak, docs/benchmarks.md, counts the server's errors).
func (p *slogPionLogger) Error(msg string) { p.log(errorLevel(msg), msg) }

func (p *slogPionLogger) Errorf(format string, args ...any) {
	if p.enabled(slog.LevelWarn) {
		msg := fmt.Sprintf(format, args...)
		p.log(errorLevel(msg), msg)
	}
}

// errorLevel is the slog level of one of pion's error messages.
func errorLevel(msg string) slog.Level {
	m := strings.TrimRight(msg, "\n")
	if strings.HasSuffix(m, " EOF") || strings.HasSuffix(m, ": EOF") ||
		strings.Contains(m, "io: read/write on closed pipe") || strings.Contains(m, "use of closed network connection") ||
		strings.Contains(m, "incoming SSRC failed Simulcast probing") {
		return slog.LevelWarn
	}
	return slog.LevelError
}
