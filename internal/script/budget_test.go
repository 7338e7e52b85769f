package script

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/store"
)

const runaway = `kt = __kyototycoon__
counter = 0
function bump(inmap, outmap) counter = counter + 1 outmap.n = counter end
function loop() while true do end end
function pcallloop() while true do pcall(function() while true do end end) end end
function coloop() coroutine.wrap(function() while true do end end)() end
function visitorloop() kt.db:accept("k", function() while true do end end) end
function iteratorloop()
  kt.db:set_bulk({a = "1", b = "2"})
  kt.db:iterate(function() while true do end end)
end
function sleeper() kt.sleep(60) end
function grow()
  local t = {}
  while true do t[#t + 1] = string.rep("x", 1000) .. #t end
end
function double()
  local s = "x"
  while true do s = s .. s end
end
function rep() return #string.rep("x", 1e12) end
function gsubbig() return #string.gsub(string.rep("x", 1e6), "x", string.rep("y", 1000)) end
function hoard(inmap, outmap)
  hoarded = hoarded or {}
  hoarded[#hoarded + 1] = string.rep(tostring(#hoarded), 1048576)
  outmap.n = #hoarded
end
function emitter()
  kt.db:set_bulk({a = "1", b = "2"})
  local big = string.rep("z", 1048576)
  kt.db:mapreduce(function(k, v, emit)
    for i = 1, 1000 do emit(k .. i, big) end
    return true
  end, function() return true end)
end
function splitmany() return #kt.split(string.rep(",", 400000), ",") end
function unpackmany() return #kt.unpack("C*", string.rep("x", 400000)) end
function arrayloadmany() return #kt.arrayload(string.rep("\0", 400000)) end
function matchmany(inmap, outmap)
  local keys = kt.db:match_prefix("key")
  outmap.keys = tostring(keys)
  outmap.err = kt.db:error():message()
  outmap.some = #kt.db:match_prefix("key", 10)
end
function count(inmap, outmap)
  local n = 0
  for i = 1, tonumber(inmap.n) do n = n + 1 end
  outmap.n = n
end
`

// limitEngine starts the runaway script with one state and the given limits.
func limitEngine(t *testing.T, timeout time.Duration, instr, mem int64) *Engine {
	cfg := engineConfig(t, runaway)
	cfg.States = 1
	cfg.Timeout, cfg.MaxInstructions, cfg.MaxMemory = timeout, instr, mem
	return newEngine(t, cfg)
}

// stopped calls name and checks that it is stopped with a LimitError of kind within a
// generous bound, and that the state is fresh afterwards (its globals start over).
func stopped(t *testing.T, e *Engine, name, kind string) {
	t.Helper()
	call(t, e, "bump")
	done := make(chan error, 1)
	go func() {
		_, _, err := e.Call(context.Background(), name, nil, nil)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s was not stopped", name)
	}
	var le *LimitError
	if !errors.As(err, &le) || le.Kind != kind {
		t.Fatalf("%s: err = %v, want a %s limit", name, err, kind)
	}
	if !strings.Contains(le.Error(), "stopped") {
		t.Errorf("%s: error %q does not say the procedure was stopped", name, le.Error())
	}
	// The state was replaced: its globals start over, and it serves again.
	if got := call(t, e, "bump")["n"]; got != "1" {
		t.Fatalf("after %s: counter = %s, want 1 (a fresh state)", name, got)
	}
}

func TestBudget_Time(t *testing.T) {
	e := limitEngine(t, 300*time.Millisecond, 0, 0)
	for _, name := range []string{"loop", "pcallloop", "coloop", "visitorloop", "iteratorloop", "sleeper"} {
		t.Run(name, func(t *testing.T) { stopped(t, e, name, "time") })
	}
}

func TestBudget_Instructions(t *testing.T) {
	e := limitEngine(t, time.Minute, 100000, 0)
	stopped(t, e, "loop", "instructions")
	stopped(t, e, "coloop", "instructions")
	// Below the budget, calls run to completion.
	if got := call(t, e, "count", "n", "1000")["n"]; got != "1000" {
		t.Fatalf("count = %s", got)
	}
}

func TestBudget_Memory(t *testing.T) {
	e := limitEngine(t, time.Minute, 0, 32<<20)
	for _, name := range []string{"grow", "double", "rep", "gsubbig", "emitter"} {
		t.Run(name, func(t *testing.T) { stopped(t, e, name, "memory") })
	}
	// Library functions that build lists stop at the cap too; match_* fail instead.
	small := limitEngine(t, time.Minute, 0, 8<<20)
	for _, name := range []string{"splitmany", "unpackmany", "arrayloadmany"} {
		t.Run(name, func(t *testing.T) { stopped(t, small, name, "memory") })
	}
	var recs []store.Record
	for i := range 200000 {
		recs = append(recs, store.Record{Key: []byte(fmt.Sprintf("key%06d", i)), XT: store.NoXT})
	}
	if _, err := small.cfg.DBs[0].SetBulk(recs, true); err != nil {
		t.Fatal(err)
	}
	expect(t, call(t, small, "matchmany"), map[string]string{
		"keys": "nil", "err": "too many records: the result exceeds the memory cap", "some": "10",
	})
	// Memory kept in globals across calls is caught too.
	t.Run("hoard", func(t *testing.T) {
		for i := 0; i < 200; i++ {
			_, rv, err := e.Call(context.Background(), "hoard", nil, nil)
			var le *LimitError
			if errors.As(err, &le) && le.Kind == "memory" {
				if i < 8 {
					t.Fatalf("stopped after %d MiB, below the 32 MiB cap", i)
				}
				return
			}
			if err != nil || rv != RVSuccess {
				t.Fatalf("hoard: rv %d, err %v", rv, err)
			}
		}
		t.Fatal("200 MiB hoarded in globals without hitting the 32 MiB cap")
	})
}

func TestBudget_Shutdown(t *testing.T) {
	e := limitEngine(t, 0, 0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := e.Call(ctx, "loop", nil, nil)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		var le *LimitError
		if !errors.As(err, &le) || le.Kind != "shutdown" {
			t.Fatalf("err = %v, want shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a cancelled call kept running")
	}
}

// Calls run concurrently on the engine's states, each with its own thid.
func TestEngine_Concurrent(t *testing.T) {
	cfg := engineConfig(t, `kt = __kyototycoon__
function work(inmap, outmap)
  local db = kt.db
  for i = 1, 50 do db:increment("n", 1) end
  outmap.thid = kt.thid
end`)
	cfg.States = 4
	e := newEngine(t, cfg)
	var wg sync.WaitGroup
	var mu sync.Mutex
	thids := map[string]bool{}
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			for j := 0; j < 10; j++ {
				out := call(t, e, "work")
				mu.Lock()
				thids[out["thid"]] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	n, err := cfg.DBs[0].Increment([]byte("n"), 0, 0, store.NoXT)
	if err != nil || n != 8*10*50 {
		t.Fatalf("n = %d (%v), want %d", n, err, 8*10*50)
	}
	for th := range thids {
		if th != "0" && th != "1" && th != "2" && th != "3" {
			t.Fatalf("thid %q out of range", th)
		}
	}
}

// A call that finds every state busy waits at most as long as a call may run.
func TestEngine_AllStatesBusy(t *testing.T) {
	e := limitEngine(t, 50*time.Millisecond, 0, 0)
	sl := <-e.free // the only state, taken
	_, _, err := e.Call(context.Background(), "bump", nil, nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Kind != "time" || !strings.Contains(le.Msg, "no Lua state became free") {
		t.Fatalf("err = %v, want a busy error", err)
	}
	e.free <- sl
	call(t, e, "bump")
}
