package fdwbridge

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func skipWithoutLocalPostgres(t *testing.T) {
	t.Helper()
	if _, err := FindBinDir(""); err != nil {
		t.Skipf("needs local PostgreSQL server binaries: %v", err)
	}
}

func TestStartPostgres_Local(t *testing.T) {
	skipWithoutLocalPostgres(t)
	ctx := testCtx(t, 2*time.Minute)
	pg, err := StartPostgres(ctx, PGOptions{Mode: ModeLocal, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			pg.Stop(true)
		}
	})
	if pg.Mode != ModeLocal || pg.Host != "127.0.0.1" || pg.User != "postgres" || pg.Database != "postgres" || pg.Port == 0 {
		t.Errorf("Postgres = %+v", pg)
	}
	if got := pg.KTHost(); got != "127.0.0.1" {
		t.Errorf("KTHost() = %q, want 127.0.0.1", got)
	}

	conn, err := pg.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var version, user string
	if err := conn.QueryRow(ctx, "SELECT version(), current_user").Scan(&version, &user); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(version, "PostgreSQL ") || user != "postgres" {
		t.Errorf("version(), current_user = %q, %q", version, user)
	}
	t.Log(version)
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pg.LogTail(5); !strings.Contains(got, "ready to accept connections") {
		t.Errorf("LogTail(5) = %q, want the ready line", got)
	}

	pid, dir := pg.PID(), pg.Dir()
	if pid <= 0 || dir == "" {
		t.Fatalf("PID() = %d, Dir() = %q", pid, dir)
	}
	start := time.Now()
	if err := pg.Stop(false); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
	t.Logf("Stop took %v", time.Since(start))
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir after Stop: %v, want it gone", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(%d, 0) after Stop = %v, want ESRCH", pid, err)
	}
	if err := pg.Stop(false); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartPostgres_AutoKeepOnFailure checks that auto mode picks local
// binaries and that a failed Stop keeps the data and the log.
func TestStartPostgres_AutoKeepOnFailure(t *testing.T) {
	skipWithoutLocalPostgres(t)
	ctx := testCtx(t, 2*time.Minute)
	var logged []string
	pg, err := StartPostgres(ctx, PGOptions{KeepOnFailure: true, Logf: func(format string, args ...any) {
		t.Logf(format, args...)
		logged = append(logged, format)
	}})
	if err != nil {
		t.Fatal(err)
	}
	dir := pg.Dir()
	t.Cleanup(func() { os.RemoveAll(dir) })
	if pg.Mode != ModeLocal {
		t.Errorf("Mode = %q, want local", pg.Mode)
	}
	if err := pg.Stop(true); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres.log")); err != nil {
		t.Errorf("log after Stop(true) with KeepOnFailure: %v", err)
	}
	if !strings.Contains(strings.Join(logged, "\n"), "kept PostgreSQL data") {
		t.Errorf("Stop(true) did not log where the data is: %q", logged)
	}
}

func TestStartPostgres_BadOptions(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	if _, err := StartPostgres(ctx, PGOptions{Mode: "vm"}); err == nil || !strings.Contains(err.Error(), `unknown mode "vm"`) {
		t.Errorf("mode vm: %v", err)
	}
	_, err := StartPostgres(ctx, PGOptions{Mode: ModeLocal, BinDir: t.TempDir()})
	if !errors.Is(err, ErrNoPostgres) {
		t.Errorf("empty BinDir: %v, want ErrNoPostgres", err)
	}
}

func TestTail(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
	} {
		if got := tail(tt.in, tt.n); got != tt.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
