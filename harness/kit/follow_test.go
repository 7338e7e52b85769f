package kit

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ktdproject/ktd/internal/fakemaster"
	"github.com/ktdproject/ktd/replication"
)

func msgFrame(ts uint64, m replication.Message) []byte {
	return replication.AppendDataFrame(nil, ts, m.Append(nil))
}

func setMsg(key string) replication.Message {
	return replication.Message{SID: 1, Op: replication.OpSet, Key: []byte(key), Value: append([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, key...)}
}

// Follow hands over data messages in order and every frame's position, and
// reports an undecodable message.
func TestFollow(t *testing.T) {
	frames := slices.Concat(
		msgFrame(5, setMsg("a")),
		replication.AppendSkipFrame(nil, 6),
		msgFrame(7, replication.Message{SID: 1, Op: replication.OpRemove, Key: []byte("a")}),
		replication.AppendDataFrame(nil, 8, []byte{0, 1}), // too short to decode
	)
	addr, positions := fakemaster.Start(t, frames)
	accepted := 0
	var got []string
	var pos []uint64
	err := Follow(context.Background(), addr, 9, 4, func() { accepted++ }, func(ts uint64, m replication.Message) error {
		got = append(got, string(rune('0'+ts))+":"+string(m.Key))
		return nil
	}, func(ts uint64) { pos = append(pos, ts) })
	if !errors.Is(err, ErrUndecodableUpdate) {
		t.Fatalf("Follow = %v, want an undecodable update", err)
	}
	if p := <-positions; p != 4 {
		t.Errorf("asked from %d, want 4", p)
	}
	if accepted != 1 || !slices.Equal(got, []string{"5:a", "7:a"}) || !slices.Equal(pos, []uint64{5, 6, 7}) {
		t.Errorf("accepted %d, messages %q, positions %v", accepted, got, pos)
	}
}
