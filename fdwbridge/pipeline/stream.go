package pipeline

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"ktd/internal/ktproto"
	"ktd/replication"
)

// xtSize is the expiration time KT stores in front of every value (a 5-byte
// big-endian absolute time) and ships in update-log set messages, unless
// the database was opened with ktopts=p, which the harness never does.
const xtSize = 5

// observerSID is the server id the harness's replication clients give. The
// master sends a client every update whose origin is not its sid; every
// update here originates on the master (sid 1) and keeps that sid when a
// replica relays it, so any other sid sees everything.
const observerSID = 0xFFF0

// follow attaches to the update log of the server at addr as a replication
// client (KT's binary 0xB1 protocol, as a slave does) and records every set
// and remove it receives in s, with its arrival time, until ctx ends. It
// asks for everything from the start of the log, answers idle frames as a
// slave does, and after a broken connection reconnects from the last
// timestamp it saw. accepted is closed once the server first accepts.
func follow(ctx context.Context, addr string, s *stream, logger *slog.Logger, accepted chan<- struct{}) {
	var ts uint64
	for ctx.Err() == nil {
		err := followOnce(ctx, addr, s, &ts, &accepted)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.errs++
		s.err = err
		s.mu.Unlock()
		logger.Warn("update-log stream broke; reconnecting", "server", s.name, "addr", addr, "ts", ts, "err", err)
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func followOnce(ctx context.Context, addr string, s *stream, ts *uint64, accepted *chan<- struct{}) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write(ktproto.AppendReplRequest(nil, 0, *ts, observerSID)); err != nil {
		return fmt.Errorf("send replication request: %w", err)
	}
	br := bufio.NewReaderSize(nc, 256<<10)
	b, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("read replication answer: %w", err)
	}
	if b != ktproto.MagicReplication {
		return fmt.Errorf("server answered the replication request with %#x (is -ulog set?)", b)
	}
	if *accepted != nil {
		close(*accepted)
		*accepted = nil
	}
	var buf []byte
	for {
		var f replication.Frame
		if f, buf, err = replication.ReadFrame(br, buf); err != nil {
			return err
		}
		now := time.Now()
		*ts = max(*ts, f.TS)
		if f.Nop {
			if _, err := nc.Write([]byte{ktproto.MagicReplication}); err != nil {
				return fmt.Errorf("answer idle frame: %w", err)
			}
			continue
		}
		if f.IsSkip() {
			continue
		}
		m, err := replication.DecodeMessage(f.Msg)
		if err != nil {
			return fmt.Errorf("frame at ts %d: %w", f.TS, err)
		}
		if m.DBID != 0 {
			continue
		}
		switch m.Op {
		case replication.OpSet:
			v := m.Value
			if len(v) >= xtSize {
				v = v[xtSize:]
			}
			s.record(arrival{key: string(m.Key), value: string(v), at: now})
		case replication.OpRemove:
			s.record(arrival{key: string(m.Key), del: true, at: now})
		case replication.OpClear:
			s.mu.Lock()
			s.clears++
			s.mu.Unlock()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
