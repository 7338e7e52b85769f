package main

import (
	"io"
	"log/slog"
	"os"
	"sync"
)

// logFile is the -log destination; Reopen supports log rotation (SIGUSR1).
type logFile struct {
	path string
	mu   sync.Mutex // guards w
	w    io.Writer
	f    *os.File
}

func openLog(path string, stdout io.Writer) (*logFile, error) {
	l := &logFile{path: path, w: stdout}
	if path == "" || path == "-" {
		return l, nil
	}
	return l, l.Reopen()
}

// Reopen closes and reopens the log file (appending).
func (l *logFile) Reopen() error {
	if l.path == "" || l.path == "-" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f, l.w = f, f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return l.f.Close()
	}
	return nil
}

// newLogger makes the slog logger for KT's log levels: -li INFO, -ls
// SYSTEM, -le ERROR, -lz nothing, default everything including DEBUG.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	if level == LevelNone {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && len(groups) == 0 {
				if lv, ok := a.Value.Any().(slog.Level); ok && lv == LevelSystem {
					a.Value = slog.StringValue("SYSTEM")
				}
			}
			return a
		},
	}))
}
