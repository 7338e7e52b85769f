// Package kit is what the harnesses share (crashloop, soak, popsim, the
// fdwtest pipeline, replbench, loadgen): one KT client ([Conn], [Scan],
// [Digest], [Ping]), one ktd child-process node ([Node]), one replication
// observer ([Observer], [Follow]), /proc sampling ([ProcStats],
// [ProcSample]), quantiles ([Quantile]) and a command's work directory and
// ktd binary ([Work]). It speaks nothing but KT 0.9.56's own protocols, so
// every harness can point it at a real KT as at ktd. No product package
// imports it; their tests use its client through kttest.
package kit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ktdproject/ktd/internal/freeport"
)

// KillGroup sends sig to the process group led by pid (see SysProcAttr).
func KillGroup(pid int, sig syscall.Signal) { syscall.Kill(-pid, sig) }

// FreePort returns a loopback port that was free a moment ago, for a child
// server, outside the kernel's ephemeral range ([freeport.Loopback]).
func FreePort() (int, error) { return freeport.Loopback() }

// LogTail returns the last n lines of the file at path, indented, for
// error messages about a child that failed.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("  (%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Sleep waits for d or until ctx ends, whichever comes first, and returns
// ctx's error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BuildKTD builds ktd (go build github.com/ktdproject/ktd/cmd/ktd, from
// within the module, without the race detector) into dir and returns the
// path of the binary.
func BuildKTD(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "ktd")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ktdproject/ktd/cmd/ktd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build github.com/ktdproject/ktd/cmd/ktd: %v\n%s", err, out)
	}
	return bin, nil
}

// FindBinary resolves a server binary to an absolute path (each child runs
// in its own directory): a path with a separator as given, else a name on
// PATH. An empty path means bin/ktd when it exists, else ktd on PATH.
func FindBinary(path string) (string, error) {
	if path == "" {
		path = "ktd"
		if st, err := os.Stat(filepath.Join("bin", "ktd")); err == nil && !st.IsDir() {
			path = filepath.Join("bin", "ktd")
		}
	}
	if !strings.ContainsRune(path, filepath.Separator) {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("find the server binary %q (give -ktd): %w", path, err)
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() {
		return "", fmt.Errorf("server binary %s not found (build it with go build -o bin/ktd ./cmd/ktd, or give -ktd)", abs)
	}
	return abs, nil
}

// Work is what a harness command works in: a directory for its servers
// and the ktd binary they run. Its command registers Flags, calls Prepare
// after parsing them, and Done after a successful run.
type Work struct {
	Prog string // the command's name: the temporary directory's prefix
	Dir  string // -dir: the work directory, kept ("": a temporary one)
	KTD  string // -ktd: the ktd binary ("": built into Dir)

	Log          io.Writer     // progress lines; nil for none
	StartTimeout time.Duration // bound on one server's start-up (default 60 s)

	temp bool
}

// Flags registers -ktd and -dir on fs.
func (w *Work) Flags(fs *flag.FlagSet) {
	fs.StringVar(&w.KTD, "ktd", w.KTD, "ktd binary (default: go build github.com/ktdproject/ktd/cmd/ktd into the work directory)")
	fs.StringVar(&w.Dir, "dir", w.Dir, "work directory, kept (default: a temporary one, removed on success)")
}

// Prepare makes a temporary directory when Dir is empty and builds ktd
// into Dir when KTD is empty.
func (w *Work) Prepare(ctx context.Context) error {
	if w.Dir == "" {
		dir, err := os.MkdirTemp("", w.Prog+"-")
		if err != nil {
			return err
		}
		w.Dir, w.temp = dir, true
	}
	if w.KTD == "" {
		bin, err := BuildKTD(ctx, w.Dir)
		if err != nil {
			w.Done()
			return err
		}
		w.KTD = bin
	}
	return nil
}

// Check checks that both Dir and KTD are set and makes them absolute (each
// server runs in a directory of its own, where a relative path would not
// resolve), and fills in Log (io.Discard) and StartTimeout when unset.
func (w *Work) Check() error {
	if w.KTD == "" || w.Dir == "" {
		return errors.New("the ktd binary and the work directory are required")
	}
	if w.Log == nil {
		w.Log = io.Discard
	}
	if w.StartTimeout <= 0 {
		w.StartTimeout = 60 * time.Second
	}
	var err error
	if w.KTD, err = filepath.Abs(w.KTD); err != nil {
		return err
	}
	w.Dir, err = filepath.Abs(w.Dir)
	return err
}

// Done removes the work directory if Prepare made it; after a failure it is
// left for its logs.
func (w *Work) Done() {
	if w.temp {
		os.RemoveAll(w.Dir)
	}
}

// Exit prints "<prog>: " and the message to stderr and exits with code.
func Exit(prog string, code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, prog+": "+format+"\n", args...)
	os.Exit(code)
}

// Every calls fn at every tick of a d ticker, with the tick's time, until
// ctx ends or fn returns false.
func Every(ctx context.Context, d time.Duration, fn func(now time.Time) bool) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if !fn(now) {
				return
			}
		}
	}
}
