package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"ktd/internal/ktproto"
	"ktd/internal/store"
)

// Master streams the update log to slaves (KT's master side of
// replication, §10 of the protocol reference) with push delivery: a
// committed write reaches connected slaves at once instead of at the next
// 100 ms poll. Each slave reads the log from Pebble at its own pace, so a
// slow slave never holds up writers or other slaves.
type Master struct {
	DBs    []*store.DB // the server's databases, by index
	Log    *Log        // the server's update-log timeline
	Logger *slog.Logger

	// Timeout bounds each write to the slave and the wait for its answer
	// to an idle frame. Default 30 s.
	Timeout time.Duration
	// IdleInterval is the pause between idle frames when nothing is
	// logged (KT: 100 ms). A commit ends the pause at once.
	IdleInterval time.Duration
}

// batchLimit bounds the records read from one database per round.
const batchLimit = 1024

// skipEvery is KT's count of consecutive filtered records after which the
// master sends a size-0 skip frame, so the slave's position moves on.
const skipEvery = 256

// record is one update-log record read for streaming.
type record struct {
	ts  uint64
	msg []byte
}

// Serve streams the log to one slave whose 15-byte request (flags, ts,
// sid) has already been read from br. It answers 0xB1, then sends every
// record after ts — without WHITESID those whose origin is not sid, with
// it only those whose origin is sid — and idle frames when there is
// nothing to send, until the slave goes away, ctx ends or a write fails.
func (m *Master) Serve(ctx context.Context, nc net.Conn, br *bufio.Reader, flags uint32, ts uint64, sid uint16) error {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	idle := m.IdleInterval
	if idle <= 0 {
		idle = 100 * time.Millisecond
	}
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("slave", nc.RemoteAddr().String(), "slave_sid", sid)
	if first, _ := m.firstRetained(); ts != 0 && first > 0 && ts+1 < first {
		// KT silently streams from the oldest retained record in this
		// case; so does ktd for compatibility, but it says so.
		logger.Warn("slave asks for a position older than the retained update log; updates in between are lost to it",
			"requested_ts", ts, "oldest_retained_ts", first)
	}
	logger.Info("slave connected", "from_ts", ts, "whitesid", flags&ktproto.FlagWhiteSID != 0)

	bw := bufio.NewWriterSize(nc, 64<<10)
	write := func() error {
		nc.SetWriteDeadline(time.Now().Add(timeout))
		return bw.Flush()
	}
	bw.WriteByte(ktproto.MagicReplication)
	if err := write(); err != nil {
		return err
	}
	white := flags&ktproto.FlagWhiteSID != 0
	var frame []byte
	pos := ts
	dropped := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		// Take the wake-up channel before reading, so that a commit that
		// lands after the read is not missed.
		changed := m.Log.Changed()
		recs, err := m.collect(pos, m.Log.Horizon())
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			for _, r := range recs {
				keep := len(r.msg) >= 2 && (uint16(r.msg[0])<<8|uint16(r.msg[1]) == sid) == white
				if keep {
					dropped = 0
					frame = AppendDataFrame(frame[:0], r.ts, r.msg)
					bw.Write(frame)
				} else if dropped++; dropped%skipEvery == 0 {
					frame = AppendSkipFrame(frame[:0], r.ts)
					bw.Write(frame)
				}
				pos = r.ts
			}
			if err := write(); err != nil {
				return err
			}
			continue
		}

		// Caught up: an idle frame, which the slave must answer with 0xB1.
		nop := PureClock(time.Now()) - 1_000_000_000
		if pos > nop {
			nop = pos
		}
		frame = AppendNopFrame(frame[:0], nop)
		bw.Write(frame)
		if err := write(); err != nil {
			return err
		}
		nc.SetReadDeadline(time.Now().Add(timeout))
		ack, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read ack: %w", err)
		}
		if ack != ktproto.MagicReplication {
			return fmt.Errorf("slave answered %#x to an idle frame", ack)
		}
		timer := time.NewTimer(idle)
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// firstRetained returns the oldest timestamp any database still logs.
func (m *Master) firstRetained() (uint64, error) {
	var first uint64
	for _, db := range m.DBs {
		f, _, err := db.ULogBounds()
		if err != nil {
			return 0, err
		}
		if f > 0 && (first == 0 || f < first) {
			first = f
		}
	}
	return first, nil
}

// ReadMerged calls fn for every update-log record of dbs with
// after < ts <= upTo, in timestamp order across the databases (the order a
// master streams them in). fn's msg is valid only during the call.
func ReadMerged(dbs []*store.DB, after, upTo uint64, fn func(ts uint64, msg []byte) error) error {
	m := &Master{DBs: dbs}
	for {
		recs, err := m.collect(after, upTo)
		if err != nil || len(recs) == 0 {
			return err
		}
		for _, r := range recs {
			if err := fn(r.ts, r.msg); err != nil {
				return err
			}
			after = r.ts
		}
	}
}

// collect reads the records with after < ts <= upTo from every database,
// merged in timestamp order. When a database has more than batchLimit
// records in the range, the result stops at its last one read, so that no
// record of it is skipped.
func (m *Master) collect(after, upTo uint64) ([]record, error) {
	if upTo <= after {
		return nil, nil
	}
	var recs []record
	cut := upTo
	for _, db := range m.DBs {
		n := 0
		var last uint64
		err := db.ReadULog(after, upTo, func(ts uint64, msg []byte) bool {
			recs = append(recs, record{ts, slices.Clone(msg)})
			n++
			last = ts
			return n < batchLimit
		})
		if err != nil {
			return nil, err
		}
		if n == batchLimit && last < cut {
			cut = last
		}
	}
	slices.SortFunc(recs, func(a, b record) int {
		switch {
		case a.ts < b.ts:
			return -1
		case a.ts > b.ts:
			return 1
		}
		return 0
	})
	for i, r := range recs {
		if r.ts > cut {
			return recs[:i], nil
		}
	}
	return recs, nil
}
