// Package ktdtest starts a Kyoto Tycoon-compatible server inside a Go test, the way
// net/http/httptest starts an HTTP server: one line, a loopback port, clean-up when the
// test ends.
//
//	func TestMyClient(t *testing.T) {
//		srv := ktdtest.New(t)                      // on-memory database "*"
//		c := mykt.Dial(srv.Addr())                 // any KT client: HTTP RPC, REST, binary
//		...
//	}
//
// The server is a real ktd (package ktserver) on 127.0.0.1 with a port of its own:
// every KT protocol, byte for byte, and every database type. On-memory databases start
// in about a millisecond; file databases ("casket.kct") are created in a directory of
// the test's own (t.TempDir) and removed with it. A master and its replicas run in one
// process with WithULog and WithMaster, and WaitSynced waits for a replica to catch up.
//
// Start and Close do the same outside tests (examples, benchmarks, a main program).
package ktdtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
)

// Server is a running in-process ktd.
type Server struct {
	srv    *ktserver.Server
	addr   string
	dir    string
	ownDir bool
	served chan error
	closed bool
}

// Option changes how a Server is started.
type Option func(*settings)

type settings struct {
	cfg    ktserver.Config
	dbs    []string
	dir    string
	master *Server
	post   []func(*ktserver.Config)
}

// WithDBs sets the databases, with KT's database arguments: "*" (on-memory cache hash,
// the default), "%", ":", "casket.kch", "casket.kct#ktopts=p", ... Database i is
// selected with KT's DB=i parameter. A relative file name is placed in the server's
// directory (WithDir, or a temporary one).
func WithDBs(dbs ...string) Option {
	return func(s *settings) { s.dbs = append([]string(nil), dbs...) }
}

// WithDir puts the file databases in dir instead of a temporary directory. The
// directory is left in place when the server closes, so a test can restart a server on
// the same data.
func WithDir(dir string) Option {
	return func(s *settings) { s.dir = dir }
}

// WithULog makes the server a replication master: it keeps an update log and stamps
// its writes with server id sid (KT's -ulog and -sid).
func WithULog(sid uint16) Option {
	return func(s *settings) { s.cfg.ULog, s.cfg.SID = true, sid }
}

// WithMaster makes the server a replica of master (KT's -mhost/-mport), with server id
// sid. The replica starts from a snapshot of its master (ktd's -bootstrap), so it needs
// no log of what the master held before. master must run WithULog.
func WithMaster(master *Server, sid uint16) Option {
	return func(s *settings) {
		s.master, s.cfg.SID = master, sid
		s.cfg.MasterAddr = master.Addr()
		s.cfg.ReplBootstrap = true
	}
}

// WithConfig lets fn change anything else of the server's ktserver.Config (limits, TLS,
// a Lua script, a logger...) after the other options have been applied. Addresses and
// paths the package chooses (DBs, RTSPath) are already set when fn runs.
func WithConfig(fn func(*ktserver.Config)) Option {
	return func(s *settings) { s.post = append(s.post, fn) }
}

// New starts a server for the test t and closes it when the test and its subtests end
// (t.Cleanup). It fails the test if the server does not start or does not close cleanly.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	opts = append([]Option{WithDir(t.TempDir())}, opts...)
	s, err := Start(opts...)
	if err != nil {
		t.Fatalf("ktdtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("ktdtest: %v", err)
		}
	})
	return s
}

// Start starts a server outside a test; the caller calls Close. Without WithDir, file
// databases go in a temporary directory that Close removes.
func Start(opts ...Option) (*Server, error) {
	st := settings{cfg: ktserver.DefaultConfig(), dbs: []string{"*"}}
	for _, o := range opts {
		o(&st)
	}
	s := &Server{dir: st.dir, served: make(chan error, 1)}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "ktdtest-")
		if err != nil {
			return nil, err
		}
		s.dir, s.ownDir = dir, true
	}
	cfg := st.cfg
	cfg.DBs = nil
	for _, db := range st.dbs {
		cfg.DBs = append(cfg.DBs, s.place(db))
	}
	if cfg.MasterAddr != "" {
		cfg.RTSPath = filepath.Join(s.dir, "replica.rts")
	}
	for _, fn := range st.post {
		fn(&cfg)
	}
	srv, err := ktserver.New(cfg)
	if err != nil {
		s.removeDir()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		s.removeDir()
		return nil, err
	}
	s.srv, s.addr = srv, ln.Addr().String()
	go func() { s.served <- srv.Serve(ln) }()
	return s, nil
}

// place puts a relative file database argument in the server's directory.
func (s *Server) place(arg string) string {
	name, opts, _ := cutHash(arg)
	if isMemory(name) || filepath.IsAbs(name) {
		return arg
	}
	return filepath.Join(s.dir, name) + opts
}

// cutHash splits "name#opts" into name and "#opts".
func cutHash(arg string) (name, opts string, found bool) {
	if i := strings.IndexByte(arg, '#'); i >= 0 {
		return arg[:i], arg[i:], true
	}
	return arg, "", false
}

// isMemory reports whether a database name is one of KT's on-memory names: "*", "%",
// ":", "-", "+" or an empty name (typed by #type=).
func isMemory(name string) bool {
	switch name {
	case "", "*", "%", ":", "-", "+":
		return true
	}
	return false
}

// Addr is the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr }

// URL is the base URL of the server's HTTP interface, "http://127.0.0.1:port"
// (RPC under /rpc/, REST at /key).
func (s *Server) URL() string { return "http://" + s.addr }

// Host is "127.0.0.1".
func (s *Server) Host() string { h, _, _ := net.SplitHostPort(s.addr); return h }

// Port is the server's TCP port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Dir is the directory of the server's file databases.
func (s *Server) Dir() string { return s.dir }

// Server is the underlying ktserver.Server, for what this package does not wrap.
func (s *Server) Server() *ktserver.Server { return s.srv }

// Set stores a record in database db (0 for the first), without expiry, as a client's
// set would, replication included.
func (s *Server) Set(db int, key, value string) error {
	d := s.srv.DB(db)
	if d == nil {
		return fmt.Errorf("ktdtest: no database %d", db)
	}
	return d.Set([]byte(key), []byte(value), store.NoXT)
}

// Get returns the value of a live record of database db; ok is false when there is none.
func (s *Server) Get(db int, key string) (value string, ok bool) {
	d := s.srv.DB(db)
	if d == nil {
		return "", false
	}
	v, _, err := d.Get([]byte(key))
	if err != nil {
		return "", false
	}
	return string(v), true
}

// Count is the number of records of database db (-1 if there is no such database).
func (s *Server) Count(db int) int64 {
	d := s.srv.DB(db)
	if d == nil {
		return -1
	}
	return d.Count()
}

// WaitSynced waits until every database of s holds exactly what the same database of
// master holds (key, value and expiry of every live record), or fails the test after
// timeout. Use it after writing to a master, before reading from its replica.
func (s *Server) WaitSynced(t testing.TB, master *Server, timeout time.Duration) {
	t.Helper()
	if err := s.AwaitSync(master, timeout); err != nil {
		t.Fatal(err)
	}
}

// AwaitSync is WaitSynced outside a test: it returns an error after timeout.
func (s *Server) AwaitSync(master *Server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		same, err := s.sameAs(master)
		if same {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("the data differs")
			}
			return fmt.Errorf("ktdtest: replica %s not in sync with master %s after %v: %w", s.addr, master.addr, timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sameAs compares the digests of every database of s and m.
func (s *Server) sameAs(m *Server) (bool, error) {
	for i := 0; ; i++ {
		a, b := s.srv.DB(i), m.srv.DB(i)
		if a == nil || b == nil {
			return a == nil && b == nil, nil
		}
		da, _, _, err := a.Digest(nil, nil, 0)
		if err != nil {
			return false, err
		}
		db, _, _, err := b.Digest(nil, nil, 0)
		if err != nil {
			return false, err
		}
		if da != db {
			return false, nil
		}
	}
}

// Close stops the server, closes its databases and, for a temporary directory of its
// own, removes it. It is idempotent.
func (s *Server) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.srv.Close()
	if serr := <-s.served; serr != nil && !errors.Is(serr, ktserver.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, s.removeDir())
}

func (s *Server) removeDir() error {
	if !s.ownDir {
		return nil
	}
	return os.RemoveAll(s.dir)
}
