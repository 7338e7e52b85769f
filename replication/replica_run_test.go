package replication

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// TestApplyRun_FrameBufferReused: frames whose bytes are overwritten by the
// next frame (the stream's read buffer is reused) are applied with their
// own keys and values, across runs that reuse the run's buffer: runs
// flushed every few records and runs ended by a record for the other
// database.
func TestApplyRun_FrameBufferReused(t *testing.T) {
	dbs := []*store.DB{openMem(t, nil), openMem(t, nil)}
	r := &Replica{SID: 2, DBs: dbs}
	dbOf := func(i int) int { return i / 3 % 2 }
	var run applyRun
	stored := func(i int) []byte {
		return fmt.Appendf([]byte("\xff\xff\xff\xff\xff"), "value %d %s", i, bytes.Repeat([]byte{'v'}, i%50))
	}
	var buf []byte
	const n = 500
	for i := range n {
		m := ktproto.ULogMessage{SID: 1, DBID: uint16(dbOf(i)), Op: OpSet, Key: fmt.Appendf(nil, "k%03d", i), Value: stored(i)}
		buf = m.Append(buf[:0])
		if err := r.add(&run, Frame{TS: uint64(i + 1), Msg: buf}); err != nil {
			t.Fatal(err)
		}
		if i%11 == 10 {
			if err := run.flush(r.DBs); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := run.flush(r.DBs); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		v, _, err := dbs[dbOf(i)].Get(fmt.Appendf(nil, "k%03d", i))
		if want := stored(i)[5:]; err != nil || !bytes.Equal(v, want) {
			t.Fatalf("k%03d = %q, %v; want %q", i, v, err, want)
		}
	}
	if pos, err := dbs[dbOf(n-1)].ReplPosition(); err != nil || pos != n {
		t.Fatalf("position %d, %v; want %d", pos, err, n)
	}

	// A run of records larger than maxRunBuf leaves its buffer to the
	// collector; the next run starts a small one.
	bigValue := make([]byte, maxRunBuf+1)
	copy(bigValue, "\xff\xff\xff\xff\xff") // no expiry
	big := ktproto.ULogMessage{SID: 1, Op: OpSet, Key: []byte("big"), Value: bigValue}
	if err := r.add(&run, Frame{TS: n + 1, Msg: big.Append(nil)}); err != nil {
		t.Fatal(err)
	}
	if err := run.flush(r.DBs); err != nil {
		t.Fatal(err)
	}
	if v, _, err := dbs[0].Get([]byte("big")); err != nil || len(v) != maxRunBuf+1-5 {
		t.Fatalf("big: %d bytes, %v", len(v), err)
	}
	if run.buf != nil || len(run.changes) != 0 {
		t.Fatalf("after a big run: buffer of %d bytes, %d changes kept", cap(run.buf), len(run.changes))
	}
}
