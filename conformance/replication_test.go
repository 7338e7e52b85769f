package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/txtar"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

// replFrame is one recorded protocol frame of a replication capture.
type replFrame struct {
	toSlave bool
	data    []byte
}

// loadReplCapture reads a capture's header and its frames in arrival order.
func loadReplCapture(t *testing.T, name string) (string, []replFrame) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/golden/replication", name))
	if err != nil {
		t.Fatal(err)
	}
	comment, sections := txtar.Split(data)
	var frames []replFrame
	for _, s := range sections {
		if s.Name == "cut" {
			break // the rest repeats idle cycles, or is a second session
		}
		if s.Name != "master-to-slave.hex" && s.Name != "slave-to-master.hex" {
			continue
		}
		b, err := DecodeHex(s.Data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		frames = append(frames, replFrame{toSlave: s.Name == "master-to-slave.hex", data: b})
	}
	return string(comment), frames
}

var getLine = regexp.MustCompile(`GET (/rpc/\S+)`)

// setupMaster starts a ktd master like the capture's and replays the
// capture's HTTP requests, one connection each.
func setupMaster(t *testing.T, header string) (*ktserver.Server, string) {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+"}
	if strings.Contains(header, "'+' other.kcpt") {
		cfg.DBs = []string{"+", "other.kcpt"}
	}
	cfg.ULog = true
	cfg.SID = 1
	srv, addr := kttest.StartServer(t, cfg)
	for _, m := range getLine.FindAllStringSubmatch(header, -1) {
		target := m[1]
		if strings.Contains(target, "...") { // the 300-record set_bulk of the skip-frame capture
			var q []string
			for i := range 300 {
				q = append(q, fmt.Sprintf("_k%03d=v", i))
			}
			target = "/rpc/set_bulk?" + strings.Join(q, "&")
		}
		if strings.HasPrefix(target, "/rpc/set?key=live") {
			continue // written during the stream
		}
		c := kttest.Dial(t, addr)
		if r := c.Do("GET " + target + " HTTP/1.1\r\n\r\n"); r.Code != 200 && r.Code != 450 {
			t.Fatalf("%s: %d", target, r.Code)
		}
	}
	return srv, addr
}

// maskTS zeroes the timestamp of a data, skip or idle frame: the only
// bytes that vary between runs.
func maskTS(f []byte) []byte {
	f = bytes.Clone(f)
	if len(f) >= 9 && (f[0] == 0xB0 || f[0] == 0xB1) {
		clear(f[1:9])
	}
	return f
}

// readFrame reads one master-to-slave frame of the expected length.
func readFrameLike(br *bufio.Reader, want []byte) ([]byte, error) {
	got := make([]byte, len(want))
	_, err := io.ReadFull(br, got)
	return got, err
}

// TestReplicationCaptures replays the recorded replication sessions of a
// real KT master against a ktd master: the same writes, the same request,
// and every frame must match byte for byte, timestamps masked.
func TestReplicationCaptures(t *testing.T) {
	for _, name := range []string{
		"own-slave-ts0.txtar", "own-slave-resume.txtar", "own-slave-same-sid.txtar",
		"own-slave-whitesid.txtar", "own-slave-skip-frame.txtar", "own-slave-two-dbs.txtar",
		"real-slave.txtar", // a real KT slave's first session against the master
	} {
		t.Run(strings.TrimSuffix(name, ".txtar"), func(t *testing.T) {
			t.Parallel()
			header, frames := loadReplCapture(t, name)
			srv, addr := setupMaster(t, header)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(nc)
			nops := 0
			for i, f := range frames {
				if !f.toSlave {
					req := f.data
					if i == 0 && strings.Contains(name, "resume") {
						// The recorded request names the recorded master's
						// third record; ask ours for its own third record.
						req = bytes.Clone(req)
						ts := nthULogTS(t, srv, 3)
						for j := range 8 {
							req[5+j] = byte(ts >> (56 - 8*j))
						}
					}
					if nops == 1 && strings.Contains(name, "ts0") {
						// The capture wrote one more record before
						// answering the first idle frame.
						c := kttest.Dial(t, addr)
						c.Do("GET /rpc/set?key=live&value=x HTTP/1.1\r\n\r\n")
					}
					if _, err := nc.Write(req); err != nil {
						t.Fatalf("frame %d: write: %v", i, err)
					}
					continue
				}
				got, err := readFrameLike(br, f.data)
				if err != nil {
					t.Fatalf("frame %d: want % x, read failed after % x: %v", i, f.data, got, err)
				}
				if !bytes.Equal(maskTS(got), maskTS(f.data)) {
					t.Fatalf("frame %d:\n got % x\nwant % x (timestamps masked)", i, got, f.data)
				}
				if f.data[0] == 0xB0 {
					nops++
				}
			}
		})
	}
}

// nthULogTS returns the timestamp of the n-th record of DB 0's log.
func nthULogTS(t *testing.T, srv *ktserver.Server, n int) uint64 {
	var ts uint64
	i := 0
	if err := srv.DB(0).ReadULog(0, ^uint64(0), func(x uint64, _ []byte) bool {
		i++
		ts = x
		return i < n
	}); err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestReplicaAgainstRecordedMaster plays the recorded stream of a real KT
// master to a ktd replica: the replica must send the bytes the real KT
// slave sent (its request, then one 0xB1 per idle frame), apply the
// records, and on its next session ask for the position it reached.
func TestReplicaAgainstRecordedMaster(t *testing.T) {
	toSlave, err := os.ReadFile("testdata/golden/replication/real-slave-session1.master-to-slave.bin")
	if err != nil {
		t.Fatal(err)
	}
	fromSlave, err := os.ReadFile("testdata/golden/replication/real-slave-session1.slave-to-master.bin")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sessions := make(chan []byte, 2)
	go func() {
		for n := 0; ; n++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			got := make([]byte, 15)
			if _, err := io.ReadFull(nc, got); err != nil {
				nc.Close()
				return
			}
			if n > 0 { // the second session: only its request matters
				sessions <- got
				nc.Close()
				return
			}
			// Send the recorded stream; collect the acks (one per 0xB0).
			nc.Write(toSlave)
			acks := make([]byte, len(fromSlave)-15)
			io.ReadFull(nc, acks)
			sessions <- append(got, acks...)
			nc.Close() // the replica reconnects
		}
	}()

	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+"}
	cfg.SID = 2
	cfg.MasterAddr = ln.Addr().String()
	cfg.RTSPath = filepath.Join(t.TempDir(), "slave.rts")
	_, addr := kttest.StartServer(t, cfg)

	var first []byte
	select {
	case first = <-sessions:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica did not connect")
	}
	// ktd replicas set flags KT masters ignore: 0x02 (FlagGapAware), to be
	// sent a snapshot rather than lose trimmed updates silently, 0x08
	// (FlagChecksum) for checksummed frames, which this recorded master,
	// like every KT master, does not answer with, 0x10 (FlagVerify) and
	// 0x20 (FlagDeferredDigest).
	ext := byte(ktproto.FlagGapAware | ktproto.FlagChecksum | ktproto.FlagVerify | ktproto.FlagDeferredDigest)
	if first[4]&^ext != 0 || first[4]&byte(ktproto.FlagGapAware|ktproto.FlagChecksum) != byte(ktproto.FlagGapAware|ktproto.FlagChecksum) || first[1] != 0 || first[2] != 0 || first[3] != 0 {
		t.Fatalf("replica request flags % x, want ktd's extension bits only (%#x)", first[1:5], ext)
	}
	first[4] = 0
	if !bytes.Equal(first, fromSlave) {
		t.Fatalf("replica sent % x\nreal KT slave sent % x (flags masked)", first, fromSlave)
	}
	c := kttest.Dial(t, addr)
	if got, want := c.RPC("match_prefix", "prefix", "").Body, "_a\t0\n_b\t1\n_c\t2\nnum\t3\n"; got != want {
		t.Fatalf("replica content after the stream = %q, want %q (what the real slave held)", got, want)
	}
	var second []byte
	select {
	case second = <-sessions:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica did not reconnect")
	}
	// It resumes from the last frame it handled: the third idle frame.
	lastNop := toSlave[len(toSlave)-8:]
	if !bytes.Equal(second[5:13], lastNop) || second[0] != 0xB1 || second[14] != 2 {
		t.Fatalf("second request % x, want ts % x (the last idle frame) and sid 2", second, lastNop)
	}
}
