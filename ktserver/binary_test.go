package ktserver_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// getBulk sends a binary get_bulk of key in db on c and returns the value found ("" and
// false for none).
func getBulk(t *testing.T, c *kttest.Client, db uint16, key string) (string, bool) {
	t.Helper()
	req := ktproto.AppendKeyBulkRequest(nil, ktproto.MagicGetBulk, 0, []ktproto.BulkRecord{{DBIdx: db, Key: []byte(key)}})
	c.Conn().SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Conn().Write(req); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Reader().ReadByte(); err != nil || m != ktproto.MagicGetBulk {
		t.Fatalf("get_bulk reply magic %x, %v", m, err)
	}
	recs, err := ktproto.ReadGetBulkReply(c.Reader())
	if err != nil {
		t.Fatalf("get_bulk reply: %v", err)
	}
	if len(recs) == 0 {
		return "", false
	}
	return string(recs[0].Value), true
}

// No-reply set_bulk and remove_bulk are visible to other connections as soon as they are
// applied, on every database type; the writer's own next request sees them too.
func TestBinary_NoReplyWritesVisible(t *testing.T) {
	cfg := everyTypeConfig(t)
	_, addr := kttest.StartServer(t, cfg)
	writer, reader := kttest.Dial(t, addr), kttest.Dial(t, addr)
	for i, arg := range cfg.DBs {
		db := uint16(i)
		for round := range 4 {
			key, value := fmt.Sprintf("k%d", round), "v"+strconv.Itoa(round)
			set := ktproto.AppendSetBulkRequest(nil, ktproto.FlagNoReply, []ktproto.BulkRecord{
				{DBIdx: db, Key: []byte(key), Value: []byte(value), XT: 1<<63 - 1}})
			if _, err := writer.Conn().Write(set); err != nil {
				t.Fatal(err)
			}
			kttest.WaitFor(t, 10*time.Second, arg+": the no-reply write on another connection", func() bool {
				v, ok := getBulk(t, reader, db, key)
				return ok && v == value
			})
			if v, ok := getBulk(t, writer, db, key); !ok || v != value {
				t.Fatalf("%s: the writer's own get_bulk: %q %v", arg, v, ok)
			}
			rm := ktproto.AppendKeyBulkRequest(nil, ktproto.MagicRemoveBulk, ktproto.FlagNoReply,
				[]ktproto.BulkRecord{{DBIdx: db, Key: []byte(key)}})
			if _, err := writer.Conn().Write(rm); err != nil {
				t.Fatal(err)
			}
			kttest.WaitFor(t, 10*time.Second, arg+": the no-reply remove on another connection", func() bool {
				_, ok := getBulk(t, reader, db, key)
				return !ok
			})
		}
	}
	// Nothing was answered on the writer's connection but its get_bulks.
	writer.Conn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := writer.Reader().Peek(1); len(n) != 0 {
		t.Fatalf("unexpected bytes after the no-reply writes: %x", n)
	}
}
