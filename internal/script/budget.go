package script

import (
	"context"
	"fmt"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// LimitError is returned by Engine.Call when a procedure was stopped for exceeding a
// budget. The state it ran on is discarded (a fresh one takes its place), so nothing
// it left in Lua globals survives; its database writes up to that point stay.
type LimitError struct {
	// Kind is "time", "instructions", "memory" or "shutdown".
	Kind string
	// Msg describes the limit that was exceeded, e.g. "ran longer than 10s".
	Msg string
}

func (e *LimitError) Error() string { return "script: procedure stopped: " + e.Msg }

// budget bounds one call of a Lua state: a wall-clock deadline, a number of VM
// instructions and the memory the state holds. gopher-lua asks its context's Done
// channel before every instruction (of the main thread and, because ktd sets the same
// context on every coroutine, of coroutines too), so Done counts instructions and,
// every checkEvery of them, checks the clock and the parent context. Memory is
// measured when the engine's watchdog, which follows the heap of the process, asks
// for it (measure), and at the end of every call. Once tripped, Done returns a closed
// channel and every further instruction raises the budget's error, also inside pcall,
// until the call unwinds.
//
// A budget belongs to one state and is only used by the goroutine running it, except
// for measure (set by the watchdog) and tripped/Err, which other goroutines may read.
type budget struct {
	st *state

	parent   context.Context
	deadline time.Time     // zero: none
	maxInstr int64         // 0: none
	maxMem   int64         // 0: none
	done     chan struct{} // closed when tripped
	open     chan struct{} // never closed: what Done returns until then

	n    int64 // instructions this call
	next int64 // when to run check next

	measure atomic.Bool // the watchdog asks for a measurement of the state
	memNext uint64      // heap size (objects) beyond which a call's end measures again

	mu      sync.Mutex
	tripErr *LimitError
}

// checkEvery is how many instructions pass between two checks of the clock and the
// parent context.
const checkEvery = 4096

func newBudget(st *state) *budget {
	return &budget{st: st, parent: context.Background(), open: make(chan struct{}), done: make(chan struct{})}
}

// reset starts a new call with the given limits.
func (b *budget) reset(parent context.Context, timeout time.Duration, maxInstr, maxMem int64) {
	if parent == nil {
		parent = context.Background()
	}
	b.parent = parent
	b.deadline = time.Time{}
	if timeout > 0 {
		b.deadline = time.Now().Add(timeout)
	}
	b.maxInstr, b.maxMem = maxInstr, maxMem
	b.n = 0
	b.next = checkEvery
	if maxInstr > 0 && maxInstr < b.next {
		b.next = maxInstr
	}
	b.mu.Lock()
	if b.tripErr != nil {
		b.tripErr = nil
		b.done = make(chan struct{})
	}
	b.mu.Unlock()
}

// Deadline implements context.Context.
func (b *budget) Deadline() (time.Time, bool) { return b.deadline, !b.deadline.IsZero() }

// Value implements context.Context.
func (b *budget) Value(key any) any { return b.parent.Value(key) }

// Err implements context.Context: the trip reason, or nil.
func (b *budget) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tripErr == nil {
		return nil
	}
	return b.tripErr
}

// AfterFunc lets context.WithCancel(budget) (gopher-lua derives one for each coroutine)
// propagate without a goroutine. Coroutines get the budget itself as their context (see
// fixThreads), so the derived contexts are never used and f need not run.
func (b *budget) AfterFunc(f func()) (stop func() bool) { return func() bool { return true } }

// Done implements context.Context. It is called before every VM instruction.
func (b *budget) Done() <-chan struct{} {
	b.n++
	if b.n >= b.next {
		b.check()
	}
	if b.measure.Load() {
		b.measure.Store(false)
		b.measureNow()
	}
	if b.tripErr != nil {
		return b.done
	}
	return b.open
}

// check runs every checkEvery instructions.
func (b *budget) check() {
	b.next = b.n + checkEvery
	if b.maxInstr > 0 {
		if b.n >= b.maxInstr {
			b.trip("instructions", fmt.Sprintf("it executed more than %d instructions", b.maxInstr))
			return
		}
		b.next = min(b.next, b.maxInstr)
	}
	if err := b.poll(); err != nil {
		b.trip(err.Kind, err.Msg)
	}
}

// poll checks the deadline and the parent context (also called from Go functions that
// wait or loop, such as kt.sleep and db:iterate).
func (b *budget) poll() *LimitError {
	if b.tripErr != nil {
		return b.tripErr
	}
	if b.parent.Err() != nil {
		return &LimitError{Kind: "shutdown", Msg: "the server is shutting down"}
	}
	if !b.deadline.IsZero() && !time.Now().Before(b.deadline) {
		return &LimitError{Kind: "time", Msg: fmt.Sprintf("it ran longer than %v", b.st.e.cfg.Timeout)}
	}
	return nil
}

// trip stops the call: from now on Done returns a closed channel.
func (b *budget) trip(kind, msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tripErr != nil {
		return
	}
	b.tripErr = &LimitError{Kind: kind, Msg: msg}
	close(b.done)
}

// tripped returns the trip reason, or nil.
func (b *budget) tripped() *LimitError {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tripErr
}

// heapSample reads the bytes of heap objects (live and not yet swept) of the process.
var heapSamplePool = sync.Pool{New: func() any {
	return &[]metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
}}

func heapObjects() uint64 {
	sp := heapSamplePool.Get().(*[]metrics.Sample)
	s := *sp
	metrics.Read(s)
	v := uint64(0)
	if s[0].Value.Kind() == metrics.KindUint64 {
		v = s[0].Value.Uint64()
	}
	heapSamplePool.Put(sp)
	return v
}

// checkMemory runs at the end of a call: it measures the state when the process heap
// has grown by a quarter of the memory cap since the state was last measured (so
// memory a procedure keeps in globals from call to call is caught too). The heap is
// shared by the whole server, so only a measurement of what this state holds can tell
// whether it is the one to stop.
func (b *budget) checkMemory() {
	if b.maxMem <= 0 {
		return
	}
	h := heapObjects()
	if h < b.memNext {
		return
	}
	b.memNext = h + uint64(b.maxMem)/4
	b.measureNow()
}

// measureNow measures the state and stops the call if it holds more than the cap. The
// cost is proportional to what the state holds.
func (b *budget) measureNow() {
	if b.maxMem <= 0 || b.tripErr != nil {
		return
	}
	if used := b.st.measure(b.maxMem); used > b.maxMem {
		b.trip("memory", fmt.Sprintf("it used more than %s of memory", sizeString(b.maxMem)))
	}
}

// chargeGo counts bytes a Go function keeps for the call (mapreduce's emitted records)
// against the memory cap.
func (b *budget) chargeGo(used int64) *LimitError {
	if b.maxMem > 0 && used > b.maxMem {
		b.trip("memory", fmt.Sprintf("it used more than %s of memory", sizeString(b.maxMem)))
	}
	return b.tripped()
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
