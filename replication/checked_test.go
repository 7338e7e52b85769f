package replication

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// sessionItem is one frame of a test stream, as written and as read back.
type sessionItem struct {
	kind string // "frame", "bootstrap", "record", "end", "digest", "cut"
	f    Frame
	ts   uint64
	sid  uint16
	dbid uint16
	key  []byte
	val  []byte
	d    Digest
}

// testSession is a stream with every kind of frame a master sends.
func testSession() []sessionItem {
	msg := (&ktproto.ULogMessage{SID: 1, DBID: 0, Op: OpSet, Key: []byte("rule:1"), Value: []byte("\x00\x00\x00\x00\x00on")}).Append(nil)
	rm := (&ktproto.ULogMessage{SID: 1, DBID: 1, Op: OpRemove, Key: []byte("rule:2")}).Append(nil)
	return []sessionItem{
		{kind: "bootstrap", ts: 1000, sid: 1},
		{kind: "record", dbid: 0, key: []byte("a"), val: []byte("value a")},
		{kind: "record", dbid: 1, key: []byte(""), val: []byte("")},
		{kind: "record", dbid: 0, key: bytes.Repeat([]byte("k"), 300), val: bytes.Repeat([]byte("v"), 5000)},
		{kind: "end"},
		{kind: "frame", f: Frame{TS: 1001, Msg: msg}},
		{kind: "frame", f: Frame{TS: 1002, Msg: rm}},
		{kind: "frame", f: Frame{TS: 1003, Msg: []byte{}}},
		{kind: "frame", f: Frame{Nop: true, TS: 1004}},
		{kind: "digest", d: Digest{TS: 1004, DBID: 1, LiveAfter: 1 << 40, Count: 7, Sum: sha256.Sum256([]byte("x"))}},
		{kind: "frame", f: Frame{TS: 1005, Msg: msg}},
		{kind: "cut", ts: 1005},
		{kind: "frame", f: Frame{TS: 1006, Msg: rm}},
		{kind: "digest", d: Digest{TS: 1005, DBID: 0, LiveAfter: 1 << 40, Count: 1, Sum: sha256.Sum256([]byte("y"))}},
	}
}

func writeSession(t testing.TB, items []sessionItem, checked bool) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	fw := &frameWriter{bw: bw, checked: checked}
	for _, it := range items {
		switch it.kind {
		case "bootstrap":
			fw.bootstrap(it.ts, it.sid)
		case "record":
			if err := fw.snapshotRecord(it.dbid, it.key, it.val); err != nil {
				t.Fatal(err)
			}
		case "end":
			fw.snapshotEnd()
		case "digest":
			fw.digest(it.d)
		case "cut":
			fw.cut(it.ts)
		case "frame":
			if it.f.Nop {
				fw.nop(it.f.TS)
			} else {
				fw.data(it.f.TS, it.f.Msg)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readSession reads a stream written by writeSession the way a replica does.
// It returns the items read before the first error.
func readSession(b []byte, checked bool) ([]sessionItem, error) {
	fr := &frameReader{br: bufio.NewReader(bytes.NewReader(b)), checked: checked}
	var got []sessionItem
	inSnapshot := false
	for {
		p, err := fr.br.Peek(1)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		switch {
		case inSnapshot:
			dbid, ksiz, rec, end, err := fr.snapshotRecord(nil)
			if err != nil {
				return got, err
			}
			if end {
				inSnapshot = false
				got = append(got, sessionItem{kind: "end"})
				continue
			}
			got = append(got, sessionItem{kind: "record", dbid: dbid, key: rec[:ksiz:ksiz], val: rec[ksiz:]})
		case p[0] == ktproto.MagicBootstrap:
			ts, sid, err := fr.bootstrapHead()
			if err != nil {
				return got, err
			}
			inSnapshot = true
			got = append(got, sessionItem{kind: "bootstrap", ts: ts, sid: sid})
		case p[0] == ktproto.MagicDigest:
			d, err := fr.digest()
			if err != nil {
				return got, err
			}
			got = append(got, sessionItem{kind: "digest", d: d})
		case p[0] == ktproto.MagicCut:
			ts, err := fr.cut()
			if err != nil {
				return got, err
			}
			got = append(got, sessionItem{kind: "cut", ts: ts})
		default:
			f, _, err := fr.next(nil)
			if err != nil {
				return got, err
			}
			got = append(got, sessionItem{kind: "frame", f: f})
		}
	}
}

func sameItem(a, b sessionItem) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case "frame":
		return a.f.Nop == b.f.Nop && a.f.TS == b.f.TS && bytes.Equal(a.f.Msg, b.f.Msg)
	case "record":
		return a.dbid == b.dbid && bytes.Equal(a.key, b.key) && bytes.Equal(a.val, b.val)
	case "bootstrap":
		return a.ts == b.ts && a.sid == b.sid
	case "cut":
		return a.ts == b.ts
	case "digest":
		return reflect.DeepEqual(a.d, b.d)
	}
	return true
}

// TestCheckedSessionRoundTrip: every kind of frame reads back as written, in
// both kinds of session.
func TestCheckedSessionRoundTrip(t *testing.T) {
	items := testSession()
	for _, checked := range []bool{false, true} {
		plainItems := items
		if !checked {
			plainItems = nil // digest and cut frames exist only in checked sessions
			for _, it := range items {
				if it.kind != "digest" && it.kind != "cut" {
					plainItems = append(plainItems, it)
				}
			}
		}
		got, err := readSession(writeSession(t, plainItems, checked), checked)
		if err != nil {
			t.Fatalf("checked=%v: %v", checked, err)
		}
		if len(got) != len(plainItems) {
			t.Fatalf("checked=%v: read %d items, wrote %d", checked, len(got), len(plainItems))
		}
		for i := range got {
			if !sameItem(got[i], plainItems[i]) {
				t.Fatalf("checked=%v: item %d read back as %+v, wrote %+v", checked, i, got[i], plainItems[i])
			}
		}
	}
}

// TestPlainFramesAreKTs: a plain session's frames are byte for byte KT's (the
// Append* encoders are checked against the recordings in codec_test.go).
func TestPlainFramesAreKTs(t *testing.T) {
	msg := []byte{0, 1, 0, 0, OpClear}
	var want []byte
	want = AppendDataFrame(want, 7, msg)
	want = AppendSkipFrame(want, 8)
	want = AppendNopFrame(want, 9)
	got := writeSession(t, []sessionItem{
		{kind: "frame", f: Frame{TS: 7, Msg: msg}},
		{kind: "frame", f: Frame{TS: 8}},
		{kind: "frame", f: Frame{Nop: true, TS: 9}},
	}, false)
	if !bytes.Equal(got, want) {
		t.Fatalf("plain frames % x, want % x", got, want)
	}
}

// TestCheckedStreamDetectsEveryFlip damages a checked stream one byte at a time
// (each position, several patterns) and checks that the reader never returns
// an item that differs from what was written: it reads the items before the
// damage intact, then fails (ErrChecksum, or ErrMalformed for a magic byte
// turned into something no frame starts with). A damaged size must fail at
// its header, never by waiting for bytes that do not come.
func TestCheckedStreamDetectsEveryFlip(t *testing.T) {
	items := testSession()
	stream := writeSession(t, items, true)
	injected, byChecksum, byMalformed := 0, 0, 0
	for pos := range stream {
		for _, mask := range []byte{0x01, 0x80, 0xFF, 0x5A} {
			b := bytes.Clone(stream)
			b[pos] ^= mask
			injected++
			got, err := readSession(b, true)
			for i := range got {
				if !sameItem(got[i], items[i]) {
					t.Fatalf("flip %#x at %d: item %d read as %+v, written %+v", mask, pos, i, got[i], items[i])
				}
			}
			switch {
			case errors.Is(err, ErrChecksum):
				byChecksum++
			case errors.Is(err, ErrMalformed), errors.Is(err, ErrRefused):
				byMalformed++
			case err == nil:
				t.Fatalf("flip %#x at byte %d of %d: not detected (%d items read)", mask, pos, len(stream), len(got))
			default:
				t.Fatalf("flip %#x at byte %d: detected only as %v (a damaged size must fail its header checksum)", mask, pos, err)
			}
		}
	}
	t.Logf("%d flips injected into a %d-byte checked stream: %d detected by checksum, %d as malformed, 0 missed",
		injected, len(stream), byChecksum, byMalformed)
	if byChecksum < injected*9/10 {
		t.Fatalf("only %d of %d flips detected by checksum", byChecksum, injected)
	}
}

// TestPlainStreamMissesFlips is the contrast: the same damage to a plain (KT)
// stream often reads as a valid, different frame.
func TestPlainStreamMissesFlips(t *testing.T) {
	var items []sessionItem
	for _, it := range testSession() {
		if it.kind != "digest" && it.kind != "cut" {
			items = append(items, it)
		}
	}
	stream := writeSession(t, items, false)
	silent := 0
	for pos := range stream {
		b := bytes.Clone(stream)
		b[pos] ^= 0x01
		got, err := readSession(b, false)
		if err != nil {
			continue
		}
		for i := range got {
			if i >= len(items) || !sameItem(got[i], items[i]) {
				silent++
				break
			}
		}
	}
	if silent == 0 {
		t.Fatal("no flip went unnoticed in a plain stream; the contrast test is not testing anything")
	}
	t.Logf("plain stream: %d of %d single-bit flips read as valid but different frames", silent, len(stream))
}

// FuzzReadCheckedFrame: any input either fails or decodes to frames that the
// checked writer encodes back to exactly the bytes consumed.
func FuzzReadCheckedFrame(f *testing.F) {
	f.Add(writeSession(f, testSession()[5:9], true))
	f.Add(writeSession(f, []sessionItem{{kind: "frame", f: Frame{Nop: true, TS: 1}}}, true))
	f.Add([]byte{0xB1, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		consumed := 0
		var buf []byte
		for range 64 {
			var fr Frame
			var err error
			fr, buf, err = ReadCheckedFrame(br, buf)
			if err != nil {
				return
			}
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			fw := &frameWriter{bw: w, checked: true}
			if fr.Nop {
				fw.nop(fr.TS)
			} else {
				fw.data(fr.TS, fr.Msg)
			}
			w.Flush()
			end := consumed + out.Len()
			if end > len(data) || !bytes.Equal(out.Bytes(), data[consumed:end]) {
				t.Fatalf("frame %+v re-encodes to % x, input was % x", fr, out.Bytes(), data[consumed:min(end, len(data))])
			}
			consumed = end
		}
	})
}

// BenchmarkReadFrames reads a stream of 1 000 data frames of a 100-byte
// record, plain and checked: the cost of the checksums on the replica.
func BenchmarkReadFrames(b *testing.B) {
	msg := (&ktproto.ULogMessage{SID: 1, Op: OpSet, Key: []byte("rule:000001"), Value: bytes.Repeat([]byte("v"), 100)}).Append(nil)
	for _, checked := range []bool{false, true} {
		var items []sessionItem
		for i := range 1000 {
			items = append(items, sessionItem{kind: "frame", f: Frame{TS: uint64(i + 1), Msg: msg}})
		}
		stream := writeSession(b, items, checked)
		b.Run(map[bool]string{false: "plain", true: "checked"}[checked], func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			rd := bytes.NewReader(stream)
			br := bufio.NewReaderSize(rd, 64<<10)
			var buf []byte
			for b.Loop() {
				rd.Reset(stream)
				br.Reset(rd)
				fr := &frameReader{br: br, checked: checked}
				for range 1000 {
					var err error
					if _, buf, err = fr.next(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
