// Package script runs Kyoto Tycoon's Lua scripting extension on an embedded, pure-Go
// Lua 5.1 interpreter (gopher-lua): the play_script procedure of KT 0.9.56's HTTP RPC
// and binary protocol.
//
// An Engine loads one script file into a fixed number of Lua states, as KT loads it
// into one state per worker thread (kt.thid tells them apart), and runs a procedure —
// any global function of the script — in a free state: Call passes the input map,
// collects the output map and returns KT's status for the procedure's result. The
// script sees KT 0.9.56's API in the global __kyototycoon__ (myscript.cc and
// kyototycoon-doc.lua), with KT's quirks; its databases are the server's, read and
// written through internal/store like every other request, so the update log,
// replication, counts and expiry see script writes as they see RPC writes.
//
// Every call runs under a budget (Config.Timeout, MaxInstructions, MaxMemory): a
// procedure that exceeds one is stopped with a *LimitError and its state replaced,
// and the server goes on serving.
package script

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/ktdproject/ktd/internal/store"
)

// KT's RPC return values (kt::RPCClient::ReturnValue), the statuses a procedure
// returns.
const (
	RVSuccess  = 0
	RVNoImpl   = 1
	RVInvalid  = 2
	RVLogic    = 3
	RVTimeout  = 4
	RVInternal = 5
)

// Version is kt.VERSION, the KT version scripts see.
const Version = "0.9.56"

// levelSystem is KT's SYSTEM log kind, as cmd/ktd defines it.
const levelSystem = slog.Level(2)

// ErrClosed is returned by Call after Close.
var ErrClosed = errors.New("script: engine closed")

// Config configures an Engine.
type Config struct {
	// Path is the script file (KT's -scr).
	Path string
	// States is the number of Lua states, KT's worker threads (-th). Default 16.
	States int
	// DBs are the server's databases, by index (kt.dbs[1] is DBs[0]).
	DBs []*store.DB
	// Names maps database names to indexes (kt.dbs["casket.kct"]); a name that is
	// missing is simply not reachable by name.
	Names map[string]int
	// Timeout bounds the wall-clock time of one call (and of loading the script into a
	// state). Zero means no bound.
	Timeout time.Duration
	// MaxInstructions bounds the Lua VM instructions of one call. Zero means no bound.
	MaxInstructions int64
	// MaxMemory bounds what one state holds (its Lua values, and what mapreduce
	// gathers for it), in bytes. Zero means no bound.
	MaxMemory int64
	// Logger receives kt.log messages and script errors; nil discards them.
	Logger *slog.Logger
}

// Engine runs procedures of one script. It is safe for concurrent use; each call
// takes a free state for itself, waiting for one if all are busy.
type Engine struct {
	cfg    Config
	logger *slog.Logger
	proto  *lua.FunctionProto // the compiled script

	free chan *slot // states not in use

	mu     sync.Mutex
	closed bool
	slots  []*slot

	// running holds the budgets of the states running Lua now, for the watchdog.
	runMu   sync.Mutex
	running map[*budget]struct{}
	stop    chan struct{} // closed by Close: the watchdog returns
	stopped chan struct{} // closed when the watchdog has returned
}

// watchEvery is how often the watchdog looks at the heap while Lua runs. Memory grows
// at most as fast as it can be written, so this bounds what a runaway state can
// allocate before it is measured.
const watchEvery = 5 * time.Millisecond

// slot holds the state of one worker; a state stopped by its budget is replaced.
type slot struct {
	thid int
	st   *state // nil until (re)created
}

// New compiles the script and loads it into every state, running its top level once
// per state as KT does. A script that cannot be read, compiled or run stops New with
// the Lua error.
func New(cfg Config) (*Engine, error) {
	if cfg.States <= 0 {
		cfg.States = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	src, err := os.ReadFile(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("script: %w", err)
	}
	name := chunkName(string(src))
	chunk, err := parse.Parse(strings.NewReader(string(src)), name)
	if err != nil {
		return nil, fmt.Errorf("script: %s: %w", filepath.Base(cfg.Path), err)
	}
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		return nil, fmt.Errorf("script: %s: %w", filepath.Base(cfg.Path), err)
	}
	e := &Engine{
		cfg:     cfg,
		logger:  cfg.Logger.With("component", "script"),
		proto:   proto,
		free:    make(chan *slot, cfg.States),
		running: map[*budget]struct{}{},
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if cfg.MaxMemory > 0 {
		go e.watch()
	} else {
		close(e.stopped)
	}
	for i := 0; i < cfg.States; i++ {
		sl := &slot{thid: i}
		st, err := e.newState(i)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("script: %s: %w", filepath.Base(cfg.Path), err)
		}
		sl.st = st
		e.slots = append(e.slots, sl)
		e.free <- sl
	}
	return e, nil
}

// chunkName is the name Lua 5.1's luaL_loadstring gives a chunk, which error messages
// start with: [string "first line..."].
func chunkName(src string) string {
	const max = 43 // LUA_IDSIZE - len(` [string "..."] `) - 1
	line := src
	if i := strings.IndexAny(src, "\r\n"); i >= 0 {
		line = src[:i]
	}
	if len(line) > max {
		line = line[:max]
	}
	if len(line) < len(src) {
		return `[string "` + line + `..."]`
	}
	return `[string "` + line + `"]`
}

// Call runs the procedure name (a global function of the script) with in as its input
// map. view(i) returns the database a request on this connection sees as database i
// (a transaction's view inside one); nil means Config.DBs. ctx ending stops the
// procedure (see LimitError).
//
// It returns the output map and KT's status: RVNoImpl when name is not a function,
// RVInternal when the procedure raised an error (logged, as KT logs it), otherwise
// the procedure's first result through lua_tointeger (nil, booleans and other
// non-numbers are RVSuccess). out is nil unless the status is RVSuccess. A procedure
// stopped by its budget returns a *LimitError, and so does a call that found every
// state busy for longer than Config.Timeout.
func (e *Engine) Call(ctx context.Context, name string, in map[string]string, view func(int) *store.DB) (out map[string]string, rv int, err error) {
	var sl *slot
	select {
	case sl = <-e.free:
	default:
		// Every state is busy: wait, at most as long as a call may run.
		var expired <-chan time.Time
		if e.cfg.Timeout > 0 {
			t := time.NewTimer(e.cfg.Timeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case sl = <-e.free:
		case <-ctx.Done():
			return nil, RVTimeout, &LimitError{Kind: "shutdown", Msg: "the server is shutting down"}
		case <-expired:
			return nil, RVTimeout, &LimitError{Kind: "time", Msg: fmt.Sprintf("no Lua state became free within %v", e.cfg.Timeout)}
		}
	}
	defer func() { e.free <- sl }()
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, RVInternal, ErrClosed
	}
	if sl.st == nil {
		st, err := e.newState(sl.thid)
		if err != nil {
			e.logger.Error("[SCRIPT]: (init): "+err.Error(), "thid", sl.thid)
			return nil, RVInternal, nil
		}
		sl.st = st
	}
	out, rv, err = sl.st.call(ctx, name, in, view)
	var le *LimitError
	if errors.As(err, &le) {
		e.logger.Warn("[SCRIPT]: "+name+": stopped: "+le.Msg, "thid", sl.thid)
		sl.st.close()
		sl.st = nil
	}
	return out, rv, err
}

// Close closes every state, waiting for calls in progress to finish. Calls made
// afterwards return ErrClosed. It is idempotent.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	slots := e.slots
	e.mu.Unlock()
	for range slots {
		sl := <-e.free
		if sl.st != nil {
			sl.st.close()
			sl.st = nil
		}
	}
	for _, sl := range slots {
		e.free <- sl
	}
	close(e.stop)
	<-e.stopped
}

// enter and leave register the budget of a state that runs Lua.
func (e *Engine) enter(b *budget) {
	e.runMu.Lock()
	e.running[b] = struct{}{}
	e.runMu.Unlock()
}

func (e *Engine) leave(b *budget) {
	e.runMu.Lock()
	delete(e.running, b)
	e.runMu.Unlock()
}

// watch follows the process heap while Lua runs: when it has grown by a quarter of the
// memory cap, every running state is asked to measure itself (on its own goroutine,
// before its next instruction), and the one holding too much is stopped. The heap is
// shared by the whole server, so growth alone proves nothing; the measurement does.
func (e *Engine) watch() {
	defer close(e.stopped)
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	step := uint64(e.cfg.MaxMemory) / 4
	var base uint64
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		e.runMu.Lock()
		n := len(e.running)
		e.runMu.Unlock()
		if n == 0 {
			base = 0
			continue
		}
		h := heapObjects()
		if base == 0 || h < base {
			base = h
			continue
		}
		if h-base < step {
			continue
		}
		base = h
		e.runMu.Lock()
		for b := range e.running {
			b.measure.Store(true)
		}
		e.runMu.Unlock()
	}
}
