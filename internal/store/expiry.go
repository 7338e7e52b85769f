package store

import (
	"container/heap"
	"sync"
	"time"
)

// maxQueuedExpiries bounds the expiry queue of one database: about 130 bytes plus the key
// per entry, so some 40 MiB with short keys. Expiring records beyond it are found by
// passes over the keys instead (expiryQueue.overflowXT).
const maxQueuedExpiries = 1 << 18

// expiryQueue tracks when written records expire, so that the sweep deletes each one
// when it falls due instead of re-reading the database to find it. It holds at most one
// entry per key, whose due time is never later than the expiry of the key's record:
// every write of a record with an expiry lowers it (a write staged by a transaction that
// is later dropped only makes it early); a due entry whose record turns out to be live
// is queued again with the record's real expiry. So an entry may be stale, never late.
// A record the queue had no room for is remembered only by its expiry time, in
// overflowXT, and found by the next pass over the keys once that time is reached.
// All methods are safe for concurrent use.
type expiryQueue struct {
	mu    sync.Mutex // guards the fields below
	limit int        // most entries; 0 means maxQueuedExpiries (tests set less)
	items expiryHeap
	byKey map[string]*expiryItem
	// overflowXT is the earliest expiry (absolute seconds) of the records the queue had
	// no room for since the last complete pass began (valid when overflow is set).
	// passXT collects the same while a pass runs, and becomes overflowXT when it
	// completes: the pass itself queues (or counts here) every expiring record it meets.
	overflowXT, passXT int64
	overflow, passOver bool
	inPass             bool
}

// expiryItem is a queued key and when its record falls due.
type expiryItem struct {
	key string
	due int64 // unix milliseconds: when the record expires, or when it was written if later
	idx int   // position in the heap
}

// expiryHeap orders items by due time (container/heap).
type expiryHeap []*expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *expiryHeap) Push(x any) {
	it := x.(*expiryItem)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

// dueMillis is when a record with expiry xt written at now falls due: the first instant
// at which it is expired (now.Unix() > xt), or now if that has passed.
func dueMillis(xt int64, now time.Time) int64 {
	return max((xt+1)*1000, now.UnixMilli())
}

// add notes that key's record expires at xt (absolute seconds, < XTMax), written at now.
func (q *expiryQueue) add(key []byte, xt int64, now time.Time) {
	due := dueMillis(xt, now)
	q.mu.Lock()
	defer q.mu.Unlock()
	if it, ok := q.byKey[string(key)]; ok {
		if due < it.due {
			it.due = due
			heap.Fix(&q.items, it.idx)
		}
		return
	}
	if limit := q.limit; len(q.items) >= maxQueuedExpiries || limit > 0 && len(q.items) >= limit {
		q.overflowXT, q.overflow = minXT(q.overflowXT, q.overflow, xt), true
		if q.inPass {
			q.passXT, q.passOver = minXT(q.passXT, q.passOver, xt), true
		}
		return
	}
	if q.byKey == nil {
		q.byKey = make(map[string]*expiryItem)
	}
	it := &expiryItem{key: string(key), due: due}
	q.byKey[it.key] = it
	heap.Push(&q.items, it)
}

// minXT is min(cur, xt), or xt when cur is not set.
func minXT(cur int64, set bool, xt int64) int64 {
	if !set {
		return xt
	}
	return min(cur, xt)
}

// popDue removes and returns up to limit keys due at or before deadline (unix ms).
func (q *expiryQueue) popDue(deadline int64, limit int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	var keys [][]byte
	for len(keys) < limit && len(q.items) > 0 && q.items[0].due <= deadline {
		it := heap.Pop(&q.items).(*expiryItem)
		delete(q.byKey, it.key)
		keys = append(keys, []byte(it.key))
	}
	return keys
}

// overflowDue reports whether a record the queue had no room for has expired at now
// (absolute seconds): then a pass over the keys is needed to find it.
func (q *expiryQueue) overflowDue(now int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.overflow && expired(q.overflowXT, now)
}

// beginPass and endPass bracket a complete pass over the keys (see overflowXT).
func (q *expiryQueue) beginPass() {
	q.mu.Lock()
	q.inPass, q.passOver = true, false
	q.mu.Unlock()
}

func (q *expiryQueue) endPass() {
	q.mu.Lock()
	if q.inPass {
		q.inPass, q.overflow, q.overflowXT = false, q.passOver, q.passXT
	}
	q.mu.Unlock()
}

// len returns the number of queued entries.
func (q *expiryQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
