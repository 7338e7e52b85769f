package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/fakemaster"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

func msgFrame(ts uint64, m Message) []byte { return AppendDataFrame(nil, ts, m.Append(nil)) }

func setMsg(key string) Message {
	return Message{SID: 1, Op: OpSet, Key: []byte(key), Value: append([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, key...)}
}

func openMem(t *testing.T, ulog store.ULog) *store.DB {
	t.Helper()
	return openSpec(t, ulog, "*")
}

// openFile opens a file database (synced writes) in a temporary directory.
func openFile(t *testing.T, ulog store.ULog) *store.DB {
	t.Helper()
	return openSpec(t, ulog, filepath.Join(t.TempDir(), "db.kct"))
}

func openSpec(t *testing.T, ulog store.ULog, arg string) *store.DB {
	t.Helper()
	spec, err := store.ParseSpec(arg)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(store.Config{Spec: spec, ULog: ulog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func present(t *testing.T, db *store.DB, keys ...string) []string {
	t.Helper()
	var got []string
	for _, k := range keys {
		if _, _, err := db.Get([]byte(k)); err == nil {
			got = append(got, k)
		}
	}
	return got
}

// A transaction arrives whole or not at all: a stream cut inside it applies
// none of it and keeps the position before it; the next session applies it
// in one batch and relogs it, marker included.
func TestReplica_TransactionAppliedWhole(t *testing.T) {
	txn := slices.Concat(
		msgFrame(10, setMsg("before")),
		msgFrame(11, Message{SID: 1, Op: OpTxBegin, Count: 3}),
		msgFrame(12, setMsg("t1")),
		msgFrame(13, setMsg("t2")),
	)
	rest := slices.Concat(
		msgFrame(11, Message{SID: 1, Op: OpTxBegin, Count: 3}),
		msgFrame(12, setMsg("t1")),
		msgFrame(13, setMsg("t2")),
		msgFrame(14, Message{SID: 1, Op: OpRemove, Key: []byte("before")}),
		msgFrame(15, setMsg("after")),
	)
	addr, positions := fakemaster.Start(t, txn, rest)
	log := NewLog(2, 0, time.Now)
	db := openMem(t, log)
	r := &Replica{Master: addr, SID: 2, DBs: []*store.DB{db}, Timeout: 5 * time.Second}

	if _, err := r.session(context.Background()); err == nil {
		t.Fatal("session over a cut stream ended without an error")
	}
	if got := present(t, db, "before", "t1", "t2"); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("after a cut inside the transaction, present = %q, want only \"before\"", got)
	}
	if pos, err := r.StoredPosition(); err != nil || pos != 10 {
		t.Fatalf("stored position = %d, %v; want 10 (before the transaction)", pos, err)
	}
	<-positions

	if _, err := r.session(context.Background()); err == nil {
		t.Fatal("second session ended without an error")
	}
	if p := <-positions; p != 10 {
		t.Fatalf("second session asked from %d, want 10", p)
	}
	if got := present(t, db, "before", "t1", "t2", "after"); !slices.Equal(got, []string{"t1", "t2", "after"}) {
		t.Fatalf("present = %q", got)
	}
	if pos, _ := r.StoredPosition(); pos != 15 {
		t.Fatalf("stored position = %d, want 15", pos)
	}
	// The relogged records keep the transaction together for the next hop.
	var ops []string
	err := db.ReadULog(0, ^uint64(0), func(_ uint64, msg []byte) bool {
		m, err := DecodeMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Op {
		case OpTxBegin:
			ops = append(ops, "TXBEGIN", string(rune('0'+m.Count)))
		case OpSet:
			ops = append(ops, "SET "+string(m.Key))
		case OpRemove:
			ops = append(ops, "REMOVE "+string(m.Key))
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SET before", "TXBEGIN", "3", "SET t1", "SET t2", "REMOVE before", "SET after"}
	if !slices.Equal(ops, want) {
		t.Fatalf("relogged = %q, want %q", ops, want)
	}
}

// Master.Serve sends transaction markers to ktd replicas only.
func TestMaster_TxMarkersForKtdReplicasOnly(t *testing.T) {
	log := NewLog(1, 0, time.Now)
	db := openMem(t, log)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	tx.DB().Set([]byte("a"), []byte("1"), store.NoXT)
	tx.DB().Set([]byte("b"), []byte("2"), store.NoXT)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	m := &Master{Log: log, DBs: []*store.DB{db}}
	for _, tc := range []struct {
		flags uint32
		want  []byte // ops of the data frames
	}{
		{0, []byte{OpSet, OpSet}},
		{ktproto.FlagGapAware, []byte{OpTxBegin, OpSet, OpSet}},
	} {
		ops := streamOps(t, m, tc.flags, 3)
		if !slices.Equal(ops, tc.want) {
			t.Errorf("flags %#x: ops % x, want % x", tc.flags, ops, tc.want)
		}
	}
}

// streamOps runs m.Serve over a pipe and returns the ops of the data frames
// received until the first idle frame.
func streamOps(t *testing.T, m *Master, flags uint32, max int) []byte {
	t.Helper()
	srv, cli := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Serve(ctx, srv, bufio.NewReader(srv), flags, 0, 9)
		srv.Close()
	}()
	defer func() {
		cancel()
		cli.Close()
		<-done
	}()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(cli)
	if b, err := br.ReadByte(); err != nil || b != ktproto.MagicReplication {
		t.Fatalf("answer %x, %v", b, err)
	}
	var ops []byte
	for len(ops) <= max {
		f, _, err := ReadFrame(br, nil)
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if f.Nop {
			return ops
		}
		if len(f.Msg) > 4 {
			ops = append(ops, f.Msg[4])
		}
	}
	return ops
}

// A record committed without sync (a replica's applied batch) reaches a
// slave's session only once a sync covered it; an observer that asks for
// visible records (FlagVisible) gets it at once and makes nobody sync.
func TestMaster_VisibleSessionsNeedNoSync(t *testing.T) {
	log := NewLog(1, 0, time.Now)
	db := openFile(t, log)
	if err := db.ApplyReplicated([]store.Change{{Op: store.OpSet, Key: []byte("k"), Value: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 'v'}}}, 7, 100); err != nil {
		t.Fatal(err)
	}
	m := &Master{Log: log, DBs: []*store.DB{db}, IdleInterval: 10 * time.Millisecond}
	if ops := streamOps(t, m, 0, 3); len(ops) != 0 {
		t.Fatalf("a slave was sent % x before any sync", ops)
	}
	var syncs atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go log.RunSyncer(ctx, time.Millisecond, func() error { syncs.Add(1); return db.Synchronize(false) }, func(err error) { t.Error(err) })
	if ops := streamOps(t, m, ktproto.FlagVisible, 3); !slices.Equal(ops, []byte{OpSet}) {
		t.Fatalf("visible session: ops % x, want the set", ops)
	}
	if n := syncs.Load(); n != 0 {
		t.Fatalf("%d syncs for a visible session", n)
	}
	// A slave's session has the log synced for it; until then it gets idle
	// frames (streamOps ends at the first).
	deadline := time.Now().Add(10 * time.Second)
	for {
		ops := streamOps(t, m, 0, 3)
		if slices.Equal(ops, []byte{OpSet}) {
			break
		}
		if len(ops) != 0 || time.Now().After(deadline) {
			t.Fatalf("slave session: ops % x, want the set once synced", ops)
		}
	}
	if syncs.Load() == 0 {
		t.Fatal("the slave was sent the record without a sync")
	}
}

// A snapshot holds exactly the commits up to the timestamp its stream
// resumes after, even on a server whose last commits wait for a sync (a
// relay): nothing in the copy is streamed again, so no key goes back to an
// older value on the new replica. The session's stream has them synced.
func TestMaster_SnapshotIsExactAtItsTimestamp(t *testing.T) {
	log := NewLog(1, 0, time.Now)
	db := openFile(t, log)
	val := func(v string) []byte { return append([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, v...) }
	for _, v := range []string{"1", "2"} { // applied without sync, as a relay does
		if err := db.ApplyReplicated([]store.Change{{Op: store.OpSet, Key: []byte("k"), Value: val(v)}}, 7, 100); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go log.RunSyncer(ctx, time.Millisecond, func() error { return db.Synchronize(false) }, func(err error) { t.Error(err) })
	m := &Master{Log: log, DBs: []*store.DB{db}, IdleInterval: 10 * time.Millisecond}

	srv, cli := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- m.Serve(ctx, srv, bufio.NewReader(srv), ktproto.FlagBootstrap|ktproto.FlagGapAware, 0, 9)
		srv.Close()
	}()
	defer func() { cancel(); cli.Close(); <-done }()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(cli)
	if b, err := br.ReadByte(); err != nil || b != ktproto.MagicReplication {
		t.Fatalf("answer %x, %v", b, err)
	}
	fr := &frameReader{br: br}
	ts, _, err := fr.bootstrapHead()
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	for {
		_, ksiz, rec, end, err := fr.snapshotRecord(nil)
		if err != nil {
			t.Fatal(err)
		}
		if end {
			break
		}
		copied = append(copied, string(rec[:ksiz])+"="+string(rec[ksiz+5:]))
	}
	if !slices.Equal(copied, []string{"k=2"}) {
		t.Fatalf("snapshot %q, want k=2", copied)
	}
	if h := log.Horizon(); h < ts {
		t.Fatalf("snapshot at ts %d sent before the log was durable up to it (horizon %d)", ts, h)
	}
	// Then a later write, and nothing of the copy again.
	if err := db.Set([]byte("k"), []byte("3"), store.NoXT); err != nil {
		t.Fatal(err)
	}
	for {
		f, _, err := fr.next(nil)
		if err != nil {
			t.Fatal(err)
		}
		if f.Nop {
			if _, err := cli.Write([]byte{ktproto.MagicReplication}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if f.IsSkip() {
			continue
		}
		m, err := DecodeMessage(f.Msg)
		if err != nil {
			t.Fatal(err)
		}
		if f.TS <= ts || string(m.Value[5:]) != "3" {
			t.Fatalf("after the snapshot at %d: ts %d %s=%q, want only the later write", ts, f.TS, m.Key, m.Value[5:])
		}
		return
	}
}

// A CLEAR holds its database's lock while it waits for a cut of the log to
// end: the views taken inside the cut must not wait for that lock.
func TestMaster_ViewsAtCutDoNotWaitForAClear(t *testing.T) {
	log := NewLog(1, 0, time.Now)
	db := openMem(t, log)
	if err := db.Set([]byte("k"), []byte("v"), store.NoXT); err != nil {
		t.Fatal(err)
	}
	m := &Master{Log: log, DBs: []*store.DB{db}}
	cleared := make(chan error, 1)
	err := log.Cut(time.Second, func(uint64) error {
		go func() { cleared <- db.Clear() }()
		// Until the CLEAR holds the lock, views are taken; then none.
		deadline := time.Now().Add(10 * time.Second)
		for {
			views, err := m.viewsAtCut(func(*store.DB) bool { return true })
			if errors.Is(err, ErrNoCut) {
				return nil
			}
			if err != nil {
				return err
			}
			closeAll(views)
			if time.Now().After(deadline) {
				return fmt.Errorf("the CLEAR never took the lock")
			}
			time.Sleep(time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-cleared; err != nil {
		t.Fatal(err)
	}
	if n := db.Count(); n != 0 {
		t.Fatalf("count %d after the CLEAR", n)
	}
}
