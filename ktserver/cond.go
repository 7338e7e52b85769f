package ktserver

import (
	"context"
	"sync"
	"time"
)

// condTable holds KT's named condition variables for WAIT and SIGNAL.
// Signals are not queued: a signal with nobody waiting is lost.
type condTable struct {
	mu      sync.Mutex // guards waiters
	waiters map[string][]chan struct{}
}

// wait blocks until name is signalled (true), or d elapses or ctx ends
// (false).
func (t *condTable) wait(ctx context.Context, name string, d time.Duration) bool {
	ch := make(chan struct{}, 1)
	t.mu.Lock()
	if t.waiters == nil {
		t.waiters = make(map[string][]chan struct{})
	}
	t.waiters[name] = append(t.waiters[name], ch)
	t.mu.Unlock()

	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ws := t.waiters[name]
	for i, w := range ws {
		if w == ch {
			t.waiters[name] = append(ws[:i:i], ws[i+1:]...)
			if len(t.waiters[name]) == 0 {
				delete(t.waiters, name)
			}
			return false
		}
	}
	// Signalled while timing out: the signal counted us, so honour it.
	return true
}

// signal wakes one waiter of name, or all of them when broadcast is set,
// and returns how many were waiting.
func (t *condTable) signal(name string, broadcast bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws := t.waiters[name]
	n := len(ws)
	if n == 0 {
		return 0
	}
	wake := ws
	if !broadcast {
		wake = ws[:1]
	}
	for _, w := range wake {
		w <- struct{}{}
	}
	if rest := ws[len(wake):]; len(rest) > 0 {
		t.waiters[name] = rest
	} else {
		delete(t.waiters, name)
	}
	return n
}
