package replication

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/ktdproject/ktd/internal/txtar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// goldenDir holds the in-repo copy of the real-KT replication recordings.
const goldenDir = "../conformance/testdata/golden/replication"

// section is one "-- name --" section of a txtar recording.
type section struct {
	name string
	text string
}

// readTxtar splits a golden txtar file into its sections (the leading
// comment is dropped).
func readTxtar(t testing.TB, path string) []section {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, parts := txtar.Split(b)
	secs := make([]section, len(parts))
	for i, p := range parts {
		secs[i] = section{name: p.Name, text: string(p.Data)}
	}
	return secs
}

// unhex decodes a hex section: '#' starts a comment, white space is ignored.
func unhex(t testing.TB, text string) []byte {
	t.Helper()
	b, err := txtar.DecodeHex([]byte(text))
	if err != nil {
		t.Fatalf("bad hex section %q: %v", text, err)
	}
	return b
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	return unhex(t, s)
}

// wantMsg is the expected content of a recorded SET/REMOVE/CLEAR message.
type wantMsg struct {
	op    byte
	key   string
	xt    uint64 // SET only
	value string // SET only: user value after the 5-byte xt
}

const xtNever = 1<<40 - 1

// scriptMessages are the 9 messages of the scripted master sequence (README
// "Replication"), all with origin sid 1 and dbid 0.
var scriptMessages = []wantMsg{
	{OpSet, "one", xtNever, "first"},
	{OpSet, "two", 4102444800, "second"},
	{OpSet, "one", xtNever, "first-more"},
	{OpSet, "counter", xtNever, "\x00\x00\x00\x00\x00\x00\x00\x05"},
	{OpRemove, "two", 0, ""},
	{OpClear, "", 0, ""},
	{OpSet, "a", xtNever, "1"},
	{OpSet, "b", xtNever, "2"},
	{OpSet, "c", xtNever, "3"},
}

// checkMsg decodes msg, compares it with want (sid 1, given dbid) and checks
// that it re-encodes to the same bytes.
func checkMsg(t *testing.T, where string, msg []byte, dbid uint16, want wantMsg) {
	t.Helper()
	m, err := DecodeMessage(msg)
	if err != nil {
		t.Fatalf("%s: DecodeMessage(% x): %v", where, msg, err)
	}
	if m.SID != 1 || m.DBID != dbid || m.Op != want.op || string(m.Key) != want.key {
		t.Errorf("%s: got sid %d dbid %d op %#x key %q, want sid 1 dbid %d op %#x key %q",
			where, m.SID, m.DBID, m.Op, m.Key, dbid, want.op, want.key)
	}
	if want.op == OpSet {
		if len(m.Value) < 5 {
			t.Fatalf("%s: SET value %q shorter than the xt prefix", where, m.Value)
		}
		xt := uint64(m.Value[0])<<32 | uint64(binary.BigEndian.Uint32(m.Value[1:]))
		if xt != want.xt || string(m.Value[5:]) != want.value {
			t.Errorf("%s: got xt %d value %q, want xt %d value %q", where, xt, m.Value[5:], want.xt, want.value)
		}
	} else if m.Value != nil {
		t.Errorf("%s: %#x message has value %q", where, m.Op, m.Value)
	}
	if got := m.Append(nil); !bytes.Equal(got, msg) {
		t.Errorf("%s: re-encoded\n% x\nwant\n% x", where, got, msg)
	}
}

// frameCounts tallies the frames of one recording.
type frameCounts struct{ data, skip, nop, acks, requests int }

// TestGoldenTxtarFrames decodes every frame of every recorded replication
// session and re-encodes it byte for byte.
func TestGoldenTxtarFrames(t *testing.T) {
	want := map[string]frameCounts{
		"own-slave-ts0.txtar":        {data: 10, nop: 3, acks: 3, requests: 1},
		"own-slave-same-sid.txtar":   {nop: 2, acks: 2, requests: 1},
		"own-slave-whitesid.txtar":   {data: 9, nop: 1, acks: 1, requests: 1},
		"own-slave-resume.txtar":     {data: 6, nop: 1, acks: 1, requests: 1},
		"own-slave-skip-frame.txtar": {skip: 1, nop: 1, acks: 1, requests: 1},
		"own-slave-two-dbs.txtar":    {data: 4, nop: 1, acks: 1, requests: 1},
		"real-slave.txtar":           {data: 9, nop: 6, acks: 6, requests: 2},
	}
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, path := range files {
		name := filepath.Base(path)
		if name == "master-ulog.txtar" {
			continue
		}
		seen++
		t.Run(name, func(t *testing.T) {
			var got frameCounts
			expectAccept := false
			var lastTS uint64
			var buf []byte
			for i, sec := range readTxtar(t, path) {
				where := name + "#" + sec.name
				switch sec.name {
				case "slave-to-master.hex":
					b := unhex(t, sec.text)
					switch {
					case len(b) == 15:
						got.requests++
						expectAccept = true
						flags, ts, sid, err := ktproto.ReadReplRequest(bufio.NewReader(bytes.NewReader(b[1:])))
						if b[0] != ktproto.MagicReplication || err != nil {
							t.Fatalf("%s: request % x: %v", where, b, err)
						}
						if re := ktproto.AppendReplRequest(nil, flags, ts, sid); !bytes.Equal(re, b) {
							t.Errorf("%s: request re-encoded % x, want % x", where, re, b)
						}
						lastTS = ts
					case len(b) == 1 && b[0] == ktproto.MagicReplication:
						got.acks++
					default:
						t.Errorf("%s: unexpected slave bytes % x", where, b)
					}
				case "master-to-slave.hex":
					b := unhex(t, sec.text)
					if expectAccept {
						if !bytes.Equal(b, []byte{ktproto.MagicReplication}) {
							t.Fatalf("%s: accept section % x, want b1", where, b)
						}
						expectAccept = false
						continue
					}
					br := bufio.NewReader(bytes.NewReader(b))
					var f Frame
					f, buf, err = ReadFrame(br, buf)
					if err != nil {
						t.Fatalf("%s (section %d): ReadFrame(% x): %v", where, i, b, err)
					}
					if _, err := br.ReadByte(); err != io.EOF {
						t.Errorf("%s: bytes left after one frame in % x", where, b)
					}
					var re []byte
					switch {
					case f.Nop:
						got.nop++
						re = AppendNopFrame(nil, f.TS)
						if f.TS < lastTS {
							t.Errorf("%s: nop ts %d went back from %d", where, f.TS, lastTS)
						}
					case f.IsSkip():
						got.skip++
						re = AppendSkipFrame(nil, f.TS)
						if f.TS <= lastTS {
							t.Errorf("%s: skip ts %d not after %d", where, f.TS, lastTS)
						}
					default:
						got.data++
						re = AppendDataFrame(nil, f.TS, f.Msg)
						if f.TS <= lastTS {
							t.Errorf("%s: data ts %d not after %d", where, f.TS, lastTS)
						}
						m, err := DecodeMessage(f.Msg)
						if err != nil {
							t.Fatalf("%s: DecodeMessage(% x): %v", where, f.Msg, err)
						}
						if m.Op != OpSet && m.Op != OpRemove && m.Op != OpClear {
							t.Errorf("%s: op %#x", where, m.Op)
						}
						if enc := m.Append(nil); !bytes.Equal(enc, f.Msg) {
							t.Errorf("%s: message re-encoded % x, want % x", where, enc, f.Msg)
						}
					}
					lastTS = max(lastTS, f.TS)
					if !bytes.Equal(re, b) {
						t.Errorf("%s: frame re-encoded % x, want % x", where, re, b)
					}
				}
			}
			if w, ok := want[name]; ok && got != w {
				t.Errorf("counts %+v, want %+v", got, w)
			} else if !ok {
				t.Errorf("no expected counts for new recording %s: %+v", name, got)
			}
		})
	}
	if seen != len(want) {
		t.Errorf("found %d recordings, want %d", seen, len(want))
	}
}

// dataMessages returns the messages of the data frames of one txtar file.
func dataMessages(t *testing.T, path string) [][]byte {
	t.Helper()
	var msgs [][]byte
	for _, sec := range readTxtar(t, path) {
		if sec.name != "master-to-slave.hex" {
			continue
		}
		b := unhex(t, sec.text)
		if len(b) == 1 {
			continue // accepted
		}
		f, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !f.Nop && len(f.Msg) > 0 {
			msgs = append(msgs, f.Msg)
		}
	}
	return msgs
}

func TestGoldenMessageContents(t *testing.T) {
	ts0 := dataMessages(t, filepath.Join(goldenDir, "own-slave-ts0.txtar"))
	want := append(append([]wantMsg{}, scriptMessages...), wantMsg{OpSet, "live", xtNever, "x"})
	if len(ts0) != len(want) {
		t.Fatalf("own-slave-ts0: %d data frames, want %d", len(ts0), len(want))
	}
	for i, msg := range ts0 {
		checkMsg(t, fmt.Sprintf("own-slave-ts0 frame %d", i), msg, 0, want[i])
	}

	resume := dataMessages(t, filepath.Join(goldenDir, "own-slave-resume.txtar"))
	if len(resume) != 6 {
		t.Fatalf("own-slave-resume: %d data frames, want 6 (records 4..9)", len(resume))
	}
	for i, msg := range resume {
		checkMsg(t, "own-slave-resume", msg, 0, scriptMessages[3+i])
	}

	two := dataMessages(t, filepath.Join(goldenDir, "own-slave-two-dbs.txtar"))
	wantTwo := []struct {
		dbid uint16
		m    wantMsg
	}{
		{0, wantMsg{OpSet, "zero", xtNever, "0"}},
		{1, wantMsg{OpSet, "one", xtNever, "1"}},
		{1, wantMsg{OpRemove, "one", 0, ""}},
		{1, wantMsg{OpClear, "", 0, ""}},
	}
	if len(two) != len(wantTwo) {
		t.Fatalf("own-slave-two-dbs: %d data frames, want %d", len(two), len(wantTwo))
	}
	for i, msg := range two {
		checkMsg(t, "own-slave-two-dbs", msg, wantTwo[i].dbid, wantTwo[i].m)
	}
}

// TestGoldenRealSlaveStreams checks the raw proxied byte streams of capture
// B: they equal the txtar sections concatenated, and the master's stream
// decodes frame by frame and re-encodes to the same bytes.
func TestGoldenRealSlaveStreams(t *testing.T) {
	streams := map[string][]byte{}
	session := ""
	for _, sec := range readTxtar(t, filepath.Join(goldenDir, "real-slave.txtar")) {
		switch {
		case strings.HasPrefix(sec.name, "session-"):
			session = sec.name
		case strings.HasPrefix(sec.name, "slave-rts-"), strings.HasPrefix(sec.name, "slave-match-"):
			session = ""
		case strings.HasSuffix(sec.name, ".hex") && session != "":
			key := "real-slave-" + strings.ReplaceAll(session, "-", "") + "." + strings.TrimSuffix(sec.name, ".hex") + ".bin"
			streams[key] = append(streams[key], unhex(t, sec.text)...)
		}
	}
	if len(streams) != 4 {
		t.Fatalf("got %d streams from real-slave.txtar, want 4", len(streams))
	}
	for name, fromTxtar := range streams {
		bin, err := os.ReadFile(filepath.Join(goldenDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bin, fromTxtar) {
			t.Errorf("%s differs from the txtar sections", name)
		}
	}

	for _, tc := range []struct {
		name      string
		data, nop int
	}{
		{"real-slave-session1.master-to-slave.bin", 9, 3},
		{"real-slave-session2.master-to-slave.bin", 0, 3},
	} {
		bin, err := os.ReadFile(filepath.Join(goldenDir, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(bytes.NewReader(bin))
		if c, err := br.ReadByte(); err != nil || c != ktproto.MagicReplication {
			t.Fatalf("%s: accept byte %#x, %v", tc.name, c, err)
		}
		re := []byte{ktproto.MagicReplication}
		var buf []byte
		var data, nop int
		var msgs [][]byte
		for {
			var f Frame
			f, buf, err = ReadFrame(br, buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if f.Nop {
				nop++
				re = AppendNopFrame(re, f.TS)
			} else {
				data++
				re = AppendDataFrame(re, f.TS, f.Msg)
				msgs = append(msgs, bytes.Clone(f.Msg))
			}
		}
		if data != tc.data || nop != tc.nop {
			t.Errorf("%s: %d data + %d nop frames, want %d + %d", tc.name, data, nop, tc.data, tc.nop)
		}
		if !bytes.Equal(re, bin) {
			t.Errorf("%s: re-encoded stream differs", tc.name)
		}
		for i, msg := range msgs {
			checkMsg(t, tc.name, msg, 0, scriptMessages[i])
		}
	}

	// Session 2's request carries exactly the ts of the rts file written at
	// the end of session 1.
	var rts1 []byte
	for _, sec := range readTxtar(t, filepath.Join(goldenDir, "real-slave.txtar")) {
		if sec.name == "slave-rts-after-session-1" {
			rts1 = []byte(strings.ReplaceAll(strings.TrimRight(sec.text, "\n"), `\n`, "\n"))
		}
	}
	if len(rts1) != RTSFileSize {
		t.Fatalf("rts after session 1 is %q (%d bytes)", rts1, len(rts1))
	}
	req := streams["real-slave-session2.slave-to-master.bin"][:15]
	_, ts, sid, err := ktproto.ReadReplRequest(bufio.NewReader(bytes.NewReader(req[1:])))
	if err != nil || sid != 2 || ts != ParseRTS(rts1) {
		t.Errorf("session 2 request ts %d sid %d (%v), rts file %q", ts, sid, err, rts1)
	}
	if got := AppendRTS(nil, ts); !bytes.Equal(got, rts1) {
		t.Errorf("AppendRTS(%d) = %q, want %q", ts, got, rts1)
	}
}

// TestT14 checks the replication vectors of kt-protocol.md §16 T14.
func TestT14(t *testing.T) {
	req := mustHex(t, "B1 00000000 11F1B56470086B40 0002")
	if got := ktproto.AppendReplRequest(nil, 0, 1293014011013000000, 2); !bytes.Equal(got, req) {
		t.Errorf("request % x, want % x", got, req)
	}

	const ts = 1293014017613000000
	setMsg := mustHex(t, "0001 0000 A1 03 0A 6F6E65 FFFFFFFFFF 6669727374")
	set := Message{SID: 1, DBID: 0, Op: OpSet, Key: []byte("one"), Value: mustHex(t, "FFFFFFFFFF 6669727374")}
	if got := set.Append(nil); !bytes.Equal(got, setMsg) {
		t.Errorf("set msg % x, want % x", got, setMsg)
	}
	frame := mustHex(t, "B1 11F1B565F96C6D40 00000014 0001 0000 A1 03 0A 6F6E65 FFFFFFFFFF 6669727374")
	if got := AppendDataFrame(nil, ts, setMsg); !bytes.Equal(got, frame) {
		t.Errorf("data frame % x, want % x", got, frame)
	}
	f, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), nil)
	if err != nil || f.Nop || f.TS != ts || !bytes.Equal(f.Msg, setMsg) {
		t.Errorf("ReadFrame(data) = %+v, %v", f, err)
	}
	if m, err := DecodeMessage(f.Msg); err != nil || m.SID != 1 || m.DBID != 0 || m.Op != OpSet ||
		string(m.Key) != "one" || !bytes.Equal(m.Value, set.Value) {
		t.Errorf("DecodeMessage = %+v, %v", m, err)
	}

	remove := Message{SID: 1, Op: OpRemove, Key: []byte("one")}
	if got, want := remove.Append(nil), mustHex(t, "0001 0000 A2 03 6F6E65"); !bytes.Equal(got, want) {
		t.Errorf("remove msg % x, want % x", got, want)
	}
	clear := Message{SID: 1, Op: OpClear}
	if got, want := clear.Append(nil), mustHex(t, "0001 0000 A5"); !bytes.Equal(got, want) {
		t.Errorf("clear msg % x, want % x", got, want)
	}

	const idleTS = 0x11F1B568388C7B80
	nop := mustHex(t, "B0 11F1B568388C7B80")
	if got := AppendNopFrame(nil, idleTS); !bytes.Equal(got, nop) {
		t.Errorf("nop % x, want % x", got, nop)
	}
	skip := mustHex(t, "B1 11F1B568388C7B80 00000000")
	if got := AppendSkipFrame(nil, idleTS); !bytes.Equal(got, skip) {
		t.Errorf("skip % x, want % x", got, skip)
	}
	br := bufio.NewReader(bytes.NewReader(append(append([]byte{}, nop...), skip...)))
	if f, _, err := ReadFrame(br, nil); err != nil || !f.Nop || f.TS != idleTS || f.Msg != nil {
		t.Errorf("ReadFrame(nop) = %+v, %v", f, err)
	}
	if f, _, err := ReadFrame(br, nil); err != nil || !f.IsSkip() || f.TS != idleTS {
		t.Errorf("ReadFrame(skip) = %+v, %v", f, err)
	}
	if _, _, err := ReadFrame(br, nil); err != io.EOF {
		t.Errorf("ReadFrame at end: %v, want io.EOF", err)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte("k"), 200)
	huge := bytes.Repeat([]byte("v"), 16384)
	for _, m := range []Message{
		{SID: 0, DBID: 0, Op: OpSet},
		{SID: 65535, DBID: 65535, Op: OpSet, Key: []byte("k"), Value: []byte("\xff\xff\xff\xff\xffv")},
		{SID: 7, DBID: 3, Op: OpSet, Key: long, Value: huge},
		{SID: 7, DBID: 3, Op: OpRemove, Key: long},
		{SID: 7, DBID: 3, Op: OpRemove},
		{SID: 9, DBID: 1, Op: OpClear},
	} {
		enc := m.Append([]byte("prefix"))
		if !bytes.HasPrefix(enc, []byte("prefix")) {
			t.Fatal("Append dropped dst")
		}
		enc = enc[len("prefix"):]
		got, err := DecodeMessage(enc)
		if err != nil {
			t.Fatalf("DecodeMessage(%x...): %v", enc[:min(len(enc), 16)], err)
		}
		if got.SID != m.SID || got.DBID != m.DBID || got.Op != m.Op ||
			!bytes.Equal(got.Key, m.Key) || !bytes.Equal(got.Value, m.Value) {
			t.Errorf("round trip of op %#x: got sid %d dbid %d key %d bytes value %d bytes", m.Op, got.SID, got.DBID, len(got.Key), len(got.Value))
		}
		if again := got.Append(nil); !bytes.Equal(again, enc) {
			t.Errorf("op %#x: re-encoding differs", m.Op)
		}
	}
	// varnum sizes from §16 T16: 200 -> 81 48, 16384 -> 81 80 00.
	enc := (&Message{Op: OpSet, Key: long, Value: huge}).Append(nil)
	if !bytes.Equal(enc[5:10], []byte{0x81, 0x48, 0x81, 0x80, 0x00}) {
		t.Errorf("varnums % x", enc[5:10])
	}
}

func TestDecodeMessageEdges(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		ok   bool
	}{
		{"empty", "", false},
		{"short header", "0001 0000", false},
		{"set without sizes", "0001 0000 A1", false},
		{"set truncated varnum", "0001 0000 A1 81", false},
		{"set missing vsiz", "0001 0000 A1 03", false},
		{"set truncated key", "0001 0000 A1 03 00 6F6E", false},
		{"set truncated value", "0001 0000 A1 01 05 61 FFFF", false},
		{"set huge ksiz", "0001 0000 A1 FFFFFFFFFFFFFFFFFF7F 00", false},
		{"set huge vsiz", "0001 0000 A1 01 FFFFFFFFFFFFFFFFFF7F 61", false},
		{"remove without size", "0001 0000 A2", false},
		{"remove truncated key", "0001 0000 A2 05 6162", false},
		{"set empty", "0001 0000 A1 00 00", true},
		{"remove empty key", "0001 0000 A2 00", true},
		{"clear", "0001 0000 A5", true},
		{"unknown op", "0001 0000 A7 FF FF", true},
		{"trailing bytes", "0001 0000 A2 01 61 EEEE", true},
		{"non-minimal varnum", "0001 0000 A2 8001 61", true},
	} {
		_, err := DecodeMessage(mustHex(t, tc.hex))
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", tc.name, err)
		}
	}

	m, _ := DecodeMessage(mustHex(t, "0102 0304 A7 FF FF"))
	if m.SID != 0x0102 || m.DBID != 0x0304 || m.Op != 0xA7 || m.Key != nil || m.Value != nil {
		t.Errorf("unknown op decoded as %+v", m)
	}
	if got := m.Append(nil); !bytes.Equal(got, mustHex(t, "0102 0304 A7")) {
		t.Errorf("unknown op re-encoded % x", got)
	}

	// Key and Value alias the input but cannot be appended into it.
	b := mustHex(t, "0001 0000 A1 01 06 61 FFFFFFFFFF 62 EE")
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	b[5+2] = 'z'
	if string(m.Key) != "z" {
		t.Error("Key does not alias the input")
	}
	_ = append(m.Key, 'X')
	_ = append(m.Value, 'X')
	if b[len(b)-1] != 0xEE || b[8] != 0xFF {
		t.Error("appending to Key or Value overwrote the input")
	}
}

func TestReadFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want error
	}{
		{"empty", "", io.EOF},
		{"refused", "BF", ErrRefused},
		{"unknown magic", "B8 00000000", ErrMalformed},
		{"nop truncated", "B0 0000", io.ErrUnexpectedEOF},
		{"data header truncated", "B1 0000000000000001 0000", io.ErrUnexpectedEOF},
		{"data truncated", "B1 0000000000000001 00000005 0001", io.ErrUnexpectedEOF},
		{"size over 1<<28", "B1 0000000000000001 10000001", ErrMalformed},
		{"huge size", "B1 0000000000000001 FFFFFFFF 00", ErrMalformed},
	} {
		_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(mustHex(t, tc.hex))), nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}

	// Exactly 1<<28 is allowed; a lying size must not allocate it up front.
	in := mustHex(t, "B1 0000000000000001 10000000 0001 0000 A5")
	_, buf, err := ReadFrame(bufio.NewReader(bytes.NewReader(in)), nil)
	if err != io.ErrUnexpectedEOF {
		t.Errorf("size 1<<28 with 5 bytes: %v, want io.ErrUnexpectedEOF", err)
	}
	if cap(buf) > growChunk {
		t.Errorf("allocated %d bytes for 5 bytes of data", cap(buf))
	}
}

func TestReadFrameLargeAndReuse(t *testing.T) {
	big := bytes.Repeat([]byte{0x5A}, 300<<10)
	stream := AppendDataFrame(nil, 1, big)
	stream = AppendDataFrame(stream, 2, []byte("small"))
	br := bufio.NewReader(bytes.NewReader(stream))
	f, buf, err := ReadFrame(br, nil)
	if err != nil || f.TS != 1 || !bytes.Equal(f.Msg, big) {
		t.Fatalf("big frame: ts %d, %d bytes, %v", f.TS, len(f.Msg), err)
	}
	capBefore := cap(buf)
	f, buf, err = ReadFrame(br, buf)
	if err != nil || f.TS != 2 || string(f.Msg) != "small" {
		t.Fatalf("small frame: %+v, %v", f, err)
	}
	if cap(buf) != capBefore || &buf[:1][0] != &f.Msg[0] {
		t.Error("buffer not reused")
	}

	// Steady state: reading frames into a big enough buffer allocates nothing.
	one := AppendDataFrame(nil, 3, mustHex(t, "0001 0000 A1 03 0A 6F6E65 FFFFFFFFFF 6669727374"))
	rd := bytes.NewReader(one)
	br = bufio.NewReader(rd)
	buf = make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(one)
		br.Reset(rd)
		var err error
		_, buf, err = ReadFrame(br, buf)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadFrame allocates %v times per frame", allocs)
	}
}
