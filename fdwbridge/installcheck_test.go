package fdwbridge

import (
	"path/filepath"
	"testing"
	"time"
)

// TestRunInstallcheck runs kt_fdw's own pg_regress suite against the
// shared PostgreSQL and a fresh in-process ktd.
func TestRunInstallcheck(t *testing.T) {
	pg := sharedPostgres(t)
	installExtension(t, pg)
	_, port := startKT(t)
	ctx := testCtx(t, 5*time.Minute)
	start := time.Now()
	out, err := RunInstallcheck(ctx, pg, port)
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, pg.LogTail(30))
	}
	t.Logf("installcheck took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
}

func TestExtensionDir(t *testing.T) {
	dir, err := ExtensionDir()
	if err != nil {
		t.Fatalf("ExtensionDir: %v", err)
	}
	if !filepath.IsAbs(dir) || filepath.Base(dir) != "kt_fdw" || filepath.Base(filepath.Dir(dir)) != "fdwbridge" {
		t.Errorf("ExtensionDir() = %q, want an absolute path ending in fdwbridge/kt_fdw", dir)
	}

	other := t.TempDir()
	t.Setenv(extensionDirEnv, other)
	if got, err := ExtensionDir(); err != nil || got != other {
		t.Errorf("with $%s: ExtensionDir() = %q, %v, want %q", extensionDirEnv, got, err, other)
	}
	t.Setenv(extensionDirEnv, filepath.Join(other, "missing"))
	if _, err := ExtensionDir(); err == nil {
		t.Errorf("with $%s missing: no error", extensionDirEnv)
	}
}
