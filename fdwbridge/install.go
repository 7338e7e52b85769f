package fdwbridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// InstallOptions configures InstallExtension.
type InstallOptions struct {
	// PGConfig is the pg_config program to build and install with. ""
	// means BinDir/pg_config when BinDir is set, else pg_config from PATH,
	// else the newest /usr/lib/postgresql/*/bin/pg_config.
	PGConfig string

	// BinDir is the bin directory of the PostgreSQL that will load the
	// extension (Postgres.BinDir); it picks pg_config when PGConfig is "".
	BinDir string

	// Logf receives progress lines; nil means silent.
	Logf func(format string, args ...any)
}

func (o *InstallOptions) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// extensionDirEnv overrides ExtensionDir, for binaries run outside the
// checkout.
const extensionDirEnv = "KT_FDW_DIR"

// ExtensionDir returns the absolute path of fdwbridge/kt_fdw, the C
// extension's sources: $KT_FDW_DIR when set, else found next to this
// package's source file, else under the directory of `go env GOMOD`.
func ExtensionDir() (string, error) {
	if dir := os.Getenv(extensionDirEnv); dir != "" {
		return checkDir(dir)
	}
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "kt_fdw")
		if d, err := checkDir(dir); err == nil {
			return d, nil
		}
		tried = append(tried, dir)
	}
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			dir := filepath.Join(filepath.Dir(gomod), "fdwbridge", "kt_fdw")
			if d, err := checkDir(dir); err == nil {
				return d, nil
			}
			tried = append(tried, dir)
		}
	}
	return "", fmt.Errorf("fdwbridge: kt_fdw sources not found (tried %s; set %s)", strings.Join(tried, ", "), extensionDirEnv)
}

func checkDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("fdwbridge: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("fdwbridge: kt_fdw sources: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("fdwbridge: kt_fdw sources: %s is not a directory", abs)
	}
	return abs, nil
}

// pgConfig is what InstallExtension needs to know from pg_config.
type pgConfig struct {
	path      string
	version   string // "PostgreSQL 15.8 (Debian ...)"
	major     string // "15"
	pgxs      string // pgxs.mk
	pkglibdir string // where the .so goes
	extdir    string // where .control and .sql go
}

// findPGConfig picks the pg_config program as InstallOptions documents.
func findPGConfig(explicit, binDir string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if binDir != "" {
		p := filepath.Join(binDir, "pg_config")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pg_config"); err == nil {
		return p, nil
	}
	if dir := newestDebianDir("pg_config"); dir != "" {
		return filepath.Join(dir, "pg_config"), nil
	}
	return "", errors.New("fdwbridge: pg_config not found (apt-get install postgresql-server-dev-NN, NN the server's major version)")
}

// readPGConfig runs pg_config once for every setting it needs.
func readPGConfig(ctx context.Context, path string) (*pgConfig, error) {
	out, err := exec.CommandContext(ctx, path, "--version", "--pgxs", "--pkglibdir", "--sharedir").Output()
	if err != nil {
		return nil, fmt.Errorf("fdwbridge: %s: %w", path, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		return nil, fmt.Errorf("fdwbridge: %s printed %q, want 4 lines", path, out)
	}
	c := &pgConfig{
		path:      path,
		version:   strings.TrimSpace(lines[0]),
		pgxs:      strings.TrimSpace(lines[1]),
		pkglibdir: strings.TrimSpace(lines[2]),
		extdir:    filepath.Join(strings.TrimSpace(lines[3]), "extension"),
	}
	if f := strings.Fields(c.version); len(f) >= 2 {
		c.major, _, _ = strings.Cut(f[1], ".")
	}
	return c, nil
}

// checkPGXS returns a clear error when PGXS is missing.
func (c *pgConfig) checkPGXS() error {
	if _, err := os.Stat(c.pgxs); err != nil {
		major := c.major
		if major == "" {
			major = "NN"
		}
		return fmt.Errorf("fdwbridge: PGXS missing (%s says %s, %v): apt-get install postgresql-server-dev-%s build-essential", c.path, c.pgxs, err, major)
	}
	return nil
}

// InstallExtension builds kt_fdw with PGXS in a temporary copy of
// ExtensionDir and installs it with `make install` into the PostgreSQL
// that pg_config describes. Installs are serialised across processes by a
// lock file in os.TempDir, since `go test ./...` runs packages in
// parallel; an install of sources identical to the last one this machine
// installed, whose library is still in place, is skipped. Installing into
// a system PostgreSQL usually needs root.
func InstallExtension(ctx context.Context, opts InstallOptions) error {
	pgcPath, err := findPGConfig(opts.PGConfig, opts.BinDir)
	if err != nil {
		return err
	}
	pgc, err := readPGConfig(ctx, pgcPath)
	if err != nil {
		return err
	}
	if err := pgc.checkPGXS(); err != nil {
		return err
	}
	for _, dir := range []string{pgc.pkglibdir, pgc.extdir} {
		if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
			return fmt.Errorf("fdwbridge: cannot install kt_fdw: %s is not writable (%v); run as root or with a pg_config of a PostgreSQL you own", dir, err)
		}
	}
	src, err := ExtensionDir()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(src, "Makefile")); err != nil {
		return fmt.Errorf("fdwbridge: kt_fdw has no Makefile: %w", err)
	}

	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "ktd-fdwbridge-install.lock"))
	if err != nil {
		return err
	}
	defer unlock()

	srcHash, err := hashTree(src)
	if err != nil {
		return err
	}
	stamp := installStamp{path: filepath.Join(os.TempDir(), "ktd-fdwbridge-install-"+shortHash(pgc.pkglibdir)+".stamp")}
	lib := filepath.Join(pgc.pkglibdir, extensionName(src)+".so")
	if stamp.current(srcHash, lib) {
		opts.logf("fdwbridge: kt_fdw already installed in %s", pgc.pkglibdir)
		return nil
	}

	start := time.Now()
	work, err := os.MkdirTemp("", "fdwbridge-build-")
	if err != nil {
		return fmt.Errorf("fdwbridge: %w", err)
	}
	defer os.RemoveAll(work)
	if err := copyTree(src, work); err != nil {
		return err
	}
	for _, target := range []string{"all", "install"} {
		out, err := runMake(ctx, work, nil, "PG_CONFIG="+pgc.path, target)
		if err != nil {
			return fmt.Errorf("fdwbridge: make %s of kt_fdw (%s): %w\n%s", target, pgc.version, err, trimOutput(out, 40))
		}
	}
	stamp.write(srcHash, lib)
	opts.logf("fdwbridge: built and installed kt_fdw for %s in %v", pgc.version, time.Since(start).Round(time.Millisecond))
	return nil
}

// RunInstallcheck runs the extension's pg_regress suite (`make
// installcheck` in a temporary copy of ExtensionDir) against pg, with
// PGHOST, PGPORT, PGUSER and PGDATABASE naming pg and KT_HOST and KT_PORT
// the ktd the tests use. It returns make's output; on failure the error
// holds regression.diffs.
func RunInstallcheck(ctx context.Context, pg *Postgres, ktPort int) (output string, err error) {
	pgcPath, err := findPGConfig("", pg.BinDir())
	if err != nil {
		return "", err
	}
	pgc, err := readPGConfig(ctx, pgcPath)
	if err != nil {
		return "", err
	}
	if err := pgc.checkPGXS(); err != nil {
		return "", err
	}
	src, err := ExtensionDir()
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "fdwbridge-installcheck-")
	if err != nil {
		return "", fmt.Errorf("fdwbridge: %w", err)
	}
	defer os.RemoveAll(work)
	if err := copyTree(src, work); err != nil {
		return "", err
	}
	env := []string{
		"PGHOST=" + pg.Host,
		"PGPORT=" + strconv.Itoa(pg.Port),
		"PGUSER=" + pg.User,
		"PGDATABASE=" + pg.Database,
		"KT_HOST=" + pg.KTHost(),
		"KT_PORT=" + strconv.Itoa(ktPort),
	}
	out, err := runMake(ctx, work, env, "PG_CONFIG="+pgc.path, "installcheck")
	if err != nil {
		diffs, derr := os.ReadFile(filepath.Join(work, "regression.diffs"))
		if derr != nil {
			diffs = []byte(fmt.Sprintf("(no regression.diffs: %v)", derr))
		}
		const maxDiffs = 64 << 10
		if len(diffs) > maxDiffs {
			diffs = append(diffs[:maxDiffs:maxDiffs], "\n... (truncated)"...)
		}
		return string(out), fmt.Errorf("fdwbridge: make installcheck of kt_fdw: %w\n%s\nregression.diffs:\n%s", err, trimOutput(out, 30), diffs)
	}
	return string(out), nil
}

// runMake runs make in dir with extra environment variables. Make's own
// variables from a parent make (jobserver descriptors) are dropped.
func runMake(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "make", append([]string{"-C", dir}, args...)...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGOPTIONS":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// lockFile takes an exclusive flock on path, polling so that ctx can end
// the wait. The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("fdwbridge: open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("fdwbridge: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("fdwbridge: wait for lock %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// skipBuildOutput reports whether a path inside the extension directory is
// a build or test output rather than a source.
func skipBuildOutput(rel string, d fs.DirEntry) bool {
	name := d.Name()
	if d.IsDir() {
		switch name {
		case "results", "log", "tmp_check", ".deps":
			return true
		}
		return false
	}
	switch filepath.Ext(name) {
	case ".o", ".so", ".bc", ".a", ".dylib":
		return true
	}
	switch name {
	case "regression.diffs", "regression.out":
		return true
	}
	return false
}

// walkSources calls fn for every source file under root, in lexical order.
func walkSources(root string, fn func(path, rel string, d fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if skipBuildOutput(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		return fn(path, rel, d)
	})
}

// copyTree copies the sources of src into the existing directory dst.
func copyTree(src, dst string) error {
	err := walkSources(src, func(path, rel string, d fs.DirEntry) error {
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		}
		return nil // sockets, symlinks: not sources
	})
	if err != nil {
		return fmt.Errorf("fdwbridge: copy %s: %w", src, err)
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// hashTree hashes the names and contents of the sources under root.
func hashTree(root string) (string, error) {
	h := sha256.New()
	err := walkSources(root, func(path, rel string, d fs.DirEntry) error {
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fdwbridge: hash %s: %w", root, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// extensionName returns the name of the extension's .control file in dir,
// "kt_fdw" when there is none.
func extensionName(dir string) string {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.control"))
	if len(matches) == 1 {
		return strings.TrimSuffix(filepath.Base(matches[0]), ".control")
	}
	return "kt_fdw"
}

// installStamp records which sources were last installed and the hash of
// the library that install produced.
type installStamp struct{ path string }

// current reports whether the sources hashing to srcHash were the last
// installed and lib is still the library that install produced.
func (s installStamp) current(srcHash, lib string) bool {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false
	}
	got := strings.Fields(string(data))
	libHash := hashFile(lib)
	return len(got) == 2 && libHash != "" && got[0] == srcHash && got[1] == libHash
}

func (s installStamp) write(srcHash, lib string) {
	libHash := hashFile(lib)
	if libHash == "" {
		_ = os.Remove(s.path)
		return
	}
	_ = os.WriteFile(s.path, []byte(srcHash+" "+libHash+"\n"), 0o644)
}
