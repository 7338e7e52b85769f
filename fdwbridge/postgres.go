// Package fdwbridge starts PostgreSQL for tests and demos, installs the
// kt_fdw extension into it and creates the pipeline schema: a rules table
// whose statement triggers write every change through the foreign table kt_rules
// into a Kyoto Tycoon compatible server (ktd).
//
// A typical harness:
//
//	pg, err := fdwbridge.StartPostgres(ctx, fdwbridge.PGOptions{})
//	defer pg.Stop(failed)
//	if pg.Mode == fdwbridge.ModeLocal {
//		err = fdwbridge.InstallExtension(ctx, fdwbridge.InstallOptions{BinDir: pg.BinDir()})
//	}
//	conn, err := pg.Connect(ctx)
//	err = fdwbridge.SetupPipeline(ctx, conn, fdwbridge.KT{Host: pg.KTHost(), Port: ktPort})
//
// PostgreSQL runs either from local binaries, as a child process of this
// one (ModeLocal), or in a Docker container built from this directory's
// Dockerfile, which has kt_fdw already installed (ModeContainer).
package fdwbridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ktdproject/ktd/internal/freeport"
)

var (
	// ErrNoPostgres means no local PostgreSQL server binaries (initdb,
	// postgres) were found.
	ErrNoPostgres = errors.New("fdwbridge: no local PostgreSQL binaries (initdb, postgres)")

	// ErrNoDocker means the Docker daemon is not reachable, so the
	// container mode cannot run.
	ErrNoDocker = errors.New("fdwbridge: Docker is not available")
)

// Mode selects how StartPostgres runs PostgreSQL.
type Mode string

const (
	// ModeAuto uses local binaries when found, else a container when
	// Docker works.
	ModeAuto Mode = "auto"
	// ModeLocal runs initdb and postgres from local binaries as a child
	// process. kt_fdw must be installed with InstallExtension.
	ModeLocal Mode = "local"
	// ModeContainer builds and runs the image of fdwbridge/Dockerfile with
	// testcontainers; kt_fdw is already installed in the image.
	ModeContainer Mode = "container"
)

// Timeouts of the local server's lifecycle.
const (
	startTimeout    = 60 * time.Second // initdb + start until a ping succeeds
	shutdownTimeout = 15 * time.Second // SIGINT (fast shutdown) until SIGKILL
	bindAttempts    = 5                // fresh ports tried when the bind fails
)

// PGOptions configures StartPostgres.
type PGOptions struct {
	// Mode is how to run PostgreSQL; "" means ModeAuto: local binaries
	// when found, else a container when Docker works, else an error saying
	// both are missing.
	Mode Mode

	// BinDir is the PostgreSQL bin directory holding initdb and postgres.
	// "" means `pg_config --bindir`, else the newest
	// /usr/lib/postgresql/*/bin, else the directory of initdb on PATH.
	BinDir string

	// Logf receives progress lines; nil means silent.
	Logf func(format string, args ...any)

	// KeepOnFailure keeps the data directory and the server log after
	// Stop(true), and logs where they are.
	KeepOnFailure bool
}

func (o *PGOptions) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Postgres is a running PostgreSQL server. Its methods are safe for
// concurrent use.
type Postgres struct {
	Host     string // address to connect to from this process
	Port     int    // TCP port on Host
	User     string // superuser, "postgres"
	Database string // "postgres"
	Mode     Mode   // ModeLocal or ModeContainer

	opts   PGOptions
	binDir string // local only

	// Local server.
	dir     string        // temporary directory: data/, socket, logs
	logPath string        // server log
	cmd     *exec.Cmd     // postmaster
	exited  chan struct{} // closed when cmd has been waited for

	// Container server.
	ctr *pgContainer

	stopOnce sync.Once
	stopErr  error
}

// StartPostgres starts a PostgreSQL server as opts says and waits until it
// accepts connections. The caller must call Stop, also when the test fails.
func StartPostgres(ctx context.Context, opts PGOptions) (*Postgres, error) {
	mode := opts.Mode
	if mode == "" {
		mode = ModeAuto
	}
	switch mode {
	case ModeLocal:
		binDir, err := FindBinDir(opts.BinDir)
		if err != nil {
			return nil, err
		}
		return startLocal(ctx, opts, binDir)
	case ModeContainer:
		return startContainer(ctx, opts)
	case ModeAuto:
		binDir, lerr := FindBinDir(opts.BinDir)
		if lerr == nil {
			opts.logf("fdwbridge: local PostgreSQL binaries in %s", binDir)
			return startLocal(ctx, opts, binDir)
		}
		derr := DockerAvailable(ctx)
		if derr == nil {
			opts.logf("fdwbridge: no local PostgreSQL (%v); using a container", lerr)
			return startContainer(ctx, opts)
		}
		return nil, fmt.Errorf("fdwbridge: need local PostgreSQL binaries or Docker, found neither: %w; %w", lerr, derr)
	default:
		return nil, fmt.Errorf("fdwbridge: unknown mode %q (want auto, local or container)", mode)
	}
}

// FindBinDir returns the PostgreSQL bin directory to use: explicit when
// set, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin,
// else the directory of initdb on PATH. The error wraps ErrNoPostgres.
func FindBinDir(explicit string) (string, error) {
	ok := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if explicit != "" {
		if !ok(explicit) {
			return "", fmt.Errorf("%w in %s", ErrNoPostgres, explicit)
		}
		return explicit, nil
	}
	var tried []string
	if pgc, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgc, "--bindir").Output(); err == nil {
			dir := strings.TrimSpace(string(out))
			if ok(dir) {
				return dir, nil
			}
			tried = append(tried, dir)
		}
	}
	if dir := newestDebianDir("initdb"); dir != "" {
		return dir, nil
	}
	tried = append(tried, "/usr/lib/postgresql/*/bin")
	if p, err := exec.LookPath("initdb"); err == nil && ok(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	tried = append(tried, "PATH")
	return "", fmt.Errorf("%w (looked in %s; install postgresql, e.g. apt-get install postgresql)", ErrNoPostgres, strings.Join(tried, ", "))
}

// newestDebianDir returns the newest /usr/lib/postgresql/NN/bin (Debian's
// layout) that holds the program name, or "".
func newestDebianDir(name string) string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		va, vb := version(a), version(b)
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return dir
		}
	}
	return ""
}

// serverCredential returns the credential that initdb and postgres must
// run with: nil normally, the "postgres" user's when running as root
// (PostgreSQL refuses to run as root).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("fdwbridge: running as root needs a \"postgres\" user to run the server as (PostgreSQL refuses root): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("fdwbridge: uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("fdwbridge: gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// startLocal runs initdb in a fresh temporary directory and starts
// postgres on a free port.
func startLocal(ctx context.Context, opts PGOptions, binDir string) (p *Postgres, err error) {
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fdwbridge-pg-")
	if err != nil {
		return nil, fmt.Errorf("fdwbridge: %w", err)
	}
	p = &Postgres{
		Host:     "127.0.0.1",
		User:     "postgres",
		Database: "postgres",
		Mode:     ModeLocal,
		opts:     opts,
		binDir:   binDir,
		dir:      dir,
		logPath:  filepath.Join(dir, "postgres.log"),
	}
	defer func() {
		if err != nil {
			if serr := p.Stop(true); serr != nil {
				opts.logf("fdwbridge: %v", serr)
			}
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("fdwbridge: chown %s to postgres: %w", dir, err)
		}
	}

	start := time.Now()
	initLog := filepath.Join(dir, "initdb.log")
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = serverEnv()
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.WriteFile(initLog, out, 0o644)
		return nil, fmt.Errorf("fdwbridge: initdb: %w\n%s", err, tail(string(out), 20))
	}
	opts.logf("fdwbridge: initdb in %s took %v", dir, time.Since(start).Round(time.Millisecond))

	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		err = p.startPostmaster(ctx, port, cred)
		if err == nil {
			break
		}
		if !errors.Is(err, errBind) || attempt == bindAttempts {
			return nil, err
		}
		opts.logf("fdwbridge: port %d taken, trying another", port)
	}
	opts.logf("fdwbridge: PostgreSQL (pid %d) accepts connections on %s:%d after %v",
		p.PID(), p.Host, p.Port, time.Since(start).Round(time.Millisecond))
	return p, nil
}

// errBind means postgres could not bind its port.
var errBind = errors.New("fdwbridge: postgres could not bind its port")

// startPostmaster starts postgres on port and waits until a connection
// succeeds. On failure the process is gone when it returns.
func (p *Postgres) startPostmaster(ctx context.Context, port int, cred *syscall.Credential) error {
	logFile, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("fdwbridge: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(p.binDir, "postgres"),
		"-D", filepath.Join(p.dir, "data"),
		"-p", strconv.Itoa(port),
		"-k", p.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB",
		"-c", "max_connections=40",
		"-c", "logging_collector=off",
	)
	cmd.Dir = p.dir
	cmd.Env = serverEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		Setpgid:    true, // a stray server can be killed by group
		// Immediate shutdown if this process dies without calling Stop.
		Pdeathsig: syscall.SIGQUIT,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("fdwbridge: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited, p.Port = cmd, exited, port

	deadline := time.Now().Add(startTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := p.Connect(pctx)
		if err == nil {
			err = conn.Ping(pctx)
			_ = conn.Close(pctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			logText := p.LogTail(30)
			if strings.Contains(logText, "could not bind") || strings.Contains(logText, "could not create any TCP/IP sockets") {
				return fmt.Errorf("%w %d:\n%s", errBind, port, logText)
			}
			return fmt.Errorf("fdwbridge: postgres exited during start (%v):\n%s", cmd.ProcessState, logText)
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("fdwbridge: wait for postgres: %w\n%s", ctx.Err(), p.LogTail(30))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("fdwbridge: postgres did not accept connections within %v (last: %v):\n%s", startTimeout, err, p.LogTail(30))
		}
	}
}

// serverEnv is the environment of initdb and postgres: ours without
// variables that would redirect them.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago
// (outside the kernel's ephemeral range: freeport).
func freePort() (int, error) {
	port, err := freeport.Loopback()
	if err != nil {
		return 0, fmt.Errorf("fdwbridge: %w", err)
	}
	return port, nil
}

// kill sends SIGKILL to the server's process group and waits for the
// postmaster to be reaped.
func (p *Postgres) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// ConnString returns a libpq URL for the server, usable by pgx and psql.
func (p *Postgres) ConnString() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(p.User),
		Host:     net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		Path:     "/" + p.Database,
		RawQuery: "sslmode=disable&application_name=fdwbridge",
	}
	return u.String()
}

// Connect opens a new connection to the server's database. The caller
// closes it.
func (p *Postgres) Connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, p.ConnString())
	if err != nil {
		return nil, fmt.Errorf("fdwbridge: connect to %s:%d: %w", p.Host, p.Port, err)
	}
	return conn, nil
}

// PID returns the postmaster's process id, or 0 for a container.
func (p *Postgres) PID() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// BinDir returns the bin directory of a local server's binaries, or "" for
// a container.
func (p *Postgres) BinDir() string { return p.binDir }

// Dir returns the temporary directory of a local server (data/, socket,
// postgres.log), or "" for a container. It is gone after Stop unless
// kept.
func (p *Postgres) Dir() string { return p.dir }

// KTHost returns the address that kt_fdw inside this PostgreSQL must use
// to reach a ktd on this host: "127.0.0.1" for a local server. For a
// container it is "host.docker.internal", mapped to the host gateway; a
// ktd must then listen on an address the gateway reaches (e.g. 0.0.0.0),
// since the container cannot reach the host's loopback.
func (p *Postgres) KTHost() string {
	if p.Mode == ModeContainer {
		return containerKTHost
	}
	return "127.0.0.1"
}

// LogTail returns the last n lines of the server log.
func (p *Postgres) LogTail(n int) string {
	if p.ctr != nil {
		return p.ctr.logTail(n)
	}
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return tail(string(data), n)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop shuts the server down and removes its temporary directory, unless
// failed and PGOptions.KeepOnFailure are set: then the directory and log
// stay and their location is logged. A local server gets SIGINT (fast
// shutdown), then SIGKILL to its process group if it has not exited
// within 15 s. Stop is idempotent; later calls return the first result.
func (p *Postgres) Stop(failed bool) error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(failed) })
	return p.stopErr
}

func (p *Postgres) stop(failed bool) error {
	keep := failed && p.opts.KeepOnFailure
	if p.ctr != nil {
		return p.ctr.stop(keep, p.opts.logf)
	}
	var errs []error
	if p.cmd != nil && p.cmd.Process != nil {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-p.exited:
			case <-time.After(shutdownTimeout):
				// The group still exists, so its id is still ours.
				p.kill()
				errs = append(errs, fmt.Errorf("fdwbridge: postgres (pid %d) ignored SIGINT for %v; killed", p.PID(), shutdownTimeout))
			}
		}
	}
	if p.dir != "" {
		if keep {
			p.opts.logf("fdwbridge: kept PostgreSQL data in %s, log %s", p.dir, p.logPath)
		} else if err := os.RemoveAll(p.dir); err != nil {
			errs = append(errs, fmt.Errorf("fdwbridge: remove %s: %w", p.dir, err))
		}
	}
	return errors.Join(errs...)
}

// trimOutput returns the last lines of a command's combined output, for
// error messages.
func trimOutput(out []byte, n int) string {
	return tail(string(bytes.TrimSpace(out)), n)
}
