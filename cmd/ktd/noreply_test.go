package main

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// TestKill9KeepsAnsweredNoReplyWrites: binary no-reply writes are committed without
// waiting for an fsync, and the connection syncs them before it answers anything. So
// once a later request on the same connection has been answered, a kill -9 loses none
// of them.
func TestKill9KeepsAnsweredNoReplyWrites(t *testing.T) {
	db := filepath.Join(t.TempDir(), "casket.kct")
	cmd, addr := startChild(t, db)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	const frames, perFrame = 50, 20
	var req []byte
	for f := range frames {
		recs := make([]ktproto.BulkRecord, perFrame)
		for i := range recs {
			recs[i] = ktproto.BulkRecord{Key: fmt.Appendf(nil, "k%04d", f*perFrame+i), Value: []byte("v"), XT: 1<<63 - 1}
		}
		req = ktproto.AppendSetBulkRequest(req, ktproto.FlagNoReply, recs)
	}
	// Then one answered request on the same connection.
	req = ktproto.AppendKeyBulkRequest(req, ktproto.MagicGetBulk, 0, []ktproto.BulkRecord{{Key: []byte("k0000")}})
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	if m, err := br.ReadByte(); err != nil || m != ktproto.MagicGetBulk {
		t.Fatalf("reply magic %x, %v", m, err)
	}
	if recs, err := ktproto.ReadGetBulkReply(br); err != nil || len(recs) != 1 {
		t.Fatalf("get_bulk reply: %v, %v", recs, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	_, addr = startChild(t, db)
	c := kttest.Dial(t, addr)
	r := c.RPC("status")
	if got, want := r.TSV()["count"], fmt.Sprint(frames*perFrame); got != want {
		t.Fatalf("count after kill -9 = %s, want %s", got, want)
	}
}
