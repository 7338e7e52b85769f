package replication

import "sort"

// ring holds the log's in-memory tail: records in timestamp order in a
// circular buffer. Trimming the oldest and adding the newest move indices,
// not records, so a full tail (64 Ki records) is never copied to make room,
// as a slice resliced from the front and appended to at the back is each
// time its capacity runs out.
type ring struct {
	buf  []record
	head int // index in buf of the oldest record
	n    int // records held
}

// len returns the number of records held.
func (r *ring) len() int { return r.n }

// at returns the i-th oldest record, 0 <= i < len.
func (r *ring) at(i int) *record {
	j := r.head + i
	if j >= len(r.buf) {
		j -= len(r.buf)
	}
	return &r.buf[j]
}

// insert adds rec in timestamp order. Commits finish nearly in order, so
// the place is found from the newest end, and is nearly always the end.
func (r *ring) insert(rec record) {
	if r.n == len(r.buf) {
		r.grow()
	}
	i := r.n
	r.n++
	for ; i > 0 && r.at(i-1).ts > rec.ts; i-- {
		*r.at(i) = *r.at(i - 1)
	}
	*r.at(i) = rec
}

// grow doubles the buffer, the records in order from its start.
func (r *ring) grow() {
	buf := make([]record, max(64, 2*len(r.buf)))
	for i := range r.n {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}

// popOldest removes and returns the oldest record; len must be > 0.
func (r *ring) popOldest() record {
	p := &r.buf[r.head]
	rec := *p
	*p = record{} // let its message be collected
	if r.head++; r.head == len(r.buf) {
		r.head = 0
	}
	r.n--
	return rec
}

// search returns the index of the oldest record with ts >= ts (len if none).
func (r *ring) search(ts uint64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).ts >= ts })
}
