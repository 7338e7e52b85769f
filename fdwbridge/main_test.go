package fdwbridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// One local PostgreSQL serves every test of this binary that does not test
// the server's own lifecycle: initdb costs seconds on a small machine.
var shared struct {
	once sync.Once
	pg   *Postgres
	err  error

	installOnce sync.Once
	installErr  error
}

func TestMain(m *testing.M) {
	// testcontainers (container mode): no reaper image can be pulled, and the
	// published ports are on the loopback, not behind this machine's gateway.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	code := m.Run()
	if shared.pg != nil {
		if code != 0 && shared.pg.Dir() != "" {
			fmt.Fprintf(os.Stderr, "fdwbridge tests failed: PostgreSQL data and log kept in %s\n", shared.pg.Dir())
		}
		if err := shared.pg.Stop(code != 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// stderrLogf logs progress to stderr in verbose mode; the shared server
// outlives any one test's log.
func stderrLogf(format string, args ...any) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// sharedPostgres returns the test binary's local PostgreSQL, starting it
// on first use. It skips the test when there are no local binaries.
func sharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
		defer cancel()
		shared.pg, shared.err = StartPostgres(ctx, PGOptions{Mode: ModeLocal, KeepOnFailure: true, Logf: stderrLogf})
	})
	if errors.Is(shared.err, ErrNoPostgres) {
		t.Skipf("needs local PostgreSQL server binaries: %v", shared.err)
	}
	if shared.err != nil {
		t.Fatalf("start shared PostgreSQL: %v", shared.err)
	}
	return shared.pg
}

// installExtension installs kt_fdw into pg's installation once per test
// binary.
func installExtension(t testing.TB, pg *Postgres) {
	t.Helper()
	shared.installOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.installErr = InstallExtension(ctx, InstallOptions{BinDir: pg.BinDir(), Logf: stderrLogf})
	})
	if shared.installErr != nil {
		t.Fatalf("InstallExtension: %v", shared.installErr)
	}
}

// testCtx returns a context that ends with the test or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// schemaConn connects to pg with a fresh schema named after the test as
// the current schema; the schema is dropped and the connection closed when
// the test ends.
func schemaConn(t testing.TB, pg *Postgres) *pgx.Conn {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	conn, err := pg.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	schema := "t_" + nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	ident := pgx.Identifier{schema}.Sanitize()
	for _, sql := range []string{
		"DROP SCHEMA IF EXISTS " + ident + " CASCADE",
		"CREATE SCHEMA " + ident,
		"SET search_path TO " + ident,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			conn.Close(ctx)
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropPipeline(ctx, conn); err != nil {
			t.Errorf("DropPipeline: %v", err)
		}
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
		if err := conn.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return conn
}
