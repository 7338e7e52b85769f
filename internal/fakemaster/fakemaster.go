// Package fakemaster is a scripted KT replication master for tests: it
// accepts one session per script, answers the slave's request with 0xB1,
// writes the script's frames and closes the connection.
package fakemaster

import (
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// Start listens on a loopback port and serves one replication session per
// entry of sessions, in order, writing that entry's frames after 0xB1. It
// returns its address and a channel of the positions the sessions asked
// for. The listener closes when the test ends.
func Start(t testing.TB, sessions ...[]byte) (addr string, positions <-chan uint64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pos := make(chan uint64, len(sessions))
	go func() {
		for _, frames := range sessions {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			// The request: magic, flags (4), position (8), SID (2).
			req := make([]byte, 15)
			if _, err := io.ReadFull(nc, req); err != nil {
				nc.Close()
				return
			}
			pos <- binary.BigEndian.Uint64(req[5:13])
			nc.Write(append([]byte{ktproto.MagicReplication}, frames...))
			nc.Close()
		}
	}()
	return ln.Addr().String(), pos
}
