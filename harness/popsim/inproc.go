package popsim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/ktserver"
)

// In-process mode (Config.InProcess) runs every server inside this process
// with ktserver.New and Serve on its loopback listener, so that hundreds
// of replicas fit on a small machine (a ktd process costs tens of MiB and
// a scheduler of its own). What changes:
//
//   - Nodes keep an in-memory database ("*"), except the targets of kill
//     events, which keep a file database in their directory.
//   - A kill is a Close of the server (graceful: what it acknowledged is
//     kept, its connections are closed) and the restart a New + Serve on
//     the same directory and port. No process dies, so nothing unsynced
//     is lost.
//   - CPU and memory are the whole process's (the harness line), not per
//     server.
//
// The observers are the same as with processes: one replication client on
// each replica's update log, timing each write's arrival by push.

// Run modes, as the report names them.
const (
	ModeProcesses = "processes"
	ModeInProcess = "inprocess"
)

// inprocCacheSize is the block cache of each in-process server: small,
// the data is small and mostly in memtables anyway. (The update logs are
// not trimmed by age: each trim is a range deletion, which makes every
// later read of a memtable dearer, and a run is short.)
const inprocCacheSize = 1 << 20

// startInProc creates the node's server and serves its address.
func (n *node) startInProc(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(n.dir, "db"), 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(n.dir, "ktd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cfg := ktserver.DefaultConfig()
	cfg.SID = uint16(n.sid)
	cfg.ULog = true
	cfg.ULogDir = filepath.Join(n.dir, "ulog")
	cfg.CacheSize = inprocCacheSize
	cfg.NoSync = n.nosync
	cfg.DBs = []string{filepath.Join(n.dir, "db", "rules.kct")}
	if n.memDB {
		cfg.DBs = []string{"*"}
	}
	if n.upstream != nil {
		cfg.MasterAddr = n.upstream.addr
		if n.proxy != nil {
			cfg.MasterAddr = n.proxy.Addr().String()
		}
		cfg.RTSPath = filepath.Join(n.dir, "rts")
		cfg.ReplBootstrap = true
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fmt.Fprintf(logf, "=== popsim: start %s in-process: db %s, upstream %q\n", n.name, cfg.DBs[0], cfg.MasterAddr)
	srv, err := ktserver.New(cfg)
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	// The first start serves the listener opened at build time (so that
	// no outgoing connection takes its port meanwhile); a restart listens
	// on the same port again, which a closing predecessor may hold for a
	// moment.
	n.mu.Lock()
	ln := n.ln
	n.ln = nil
	n.mu.Unlock()
	for i := 0; ln == nil; i++ {
		if ln, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		ln = nil
		if i == 50 || ctx.Err() != nil {
			srv.Close()
			logf.Close()
			return fmt.Errorf("start %s: %w", n.name, err)
		}
		kit.Sleep(ctx, 20*time.Millisecond)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		if err := srv.Serve(ln); err != nil && err != ktserver.ErrServerClosed {
			fmt.Fprintf(logf, "=== popsim: %s: serve: %v\n", n.name, err)
		}
	}()
	n.mu.Lock()
	n.srv, n.logf, n.exited = srv, logf, exited
	n.starts++
	n.mu.Unlock()
	return nil
}

// closeInProc closes the node's server, if it runs, and waits for it.
func (n *node) closeInProc() {
	n.mu.Lock()
	srv, logf, exited := n.srv, n.logf, n.exited
	n.srv, n.logf = nil, nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	if err := srv.Close(); err != nil {
		fmt.Fprintf(logf, "=== popsim: %s: close: %v\n", n.name, err)
	}
	<-exited
	logf.Close()
}
