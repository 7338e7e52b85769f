package store

import (
	"context"
	"fmt"
	"log/slog"
)

// pebbleLogger adapts slog to pebble.Logger. Pebble logs routine events (flushes,
// compactions, WAL rotation) at info level, which is noise for a KT server, so they go
// to Debug; errors stay errors.
type pebbleLogger struct{ l *slog.Logger }

// Infof logs at Debug level.
func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

// Errorf logs at Error level.
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf logs at Error level and panics: Pebble calls it on broken invariants and does
// not expect it to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble")
	panic("pebble: " + msg)
}
