package replication

import (
	"bufio"
	"context"
	"net"
	"slices"
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
	spec, err := store.ParseSpec("*")
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
