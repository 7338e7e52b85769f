package replication

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// goldenSeeds returns every recorded frame, message and ulog file.
func goldenSeeds(t testing.TB) (frames, msgs [][]byte) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.txtar"))
	for _, path := range files {
		if filepath.Base(path) == "master-ulog.txtar" {
			continue
		}
		for _, sec := range readTxtar(t, path) {
			if sec.name != "master-to-slave.hex" {
				continue
			}
			b := unhex(t, sec.text)
			if len(b) == 1 {
				continue
			}
			frames = append(frames, b)
			if f, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)), nil); err == nil && len(f.Msg) > 0 {
				msgs = append(msgs, f.Msg)
			}
		}
	}
	for _, name := range []string{"real-slave-session1.master-to-slave.bin", "real-slave-session2.master-to-slave.bin"} {
		if b, err := os.ReadFile(filepath.Join(goldenDir, name)); err == nil {
			frames = append(frames, b[1:]) // without the accept byte
		}
	}
	return frames, msgs
}

// canonical reports whether b is a valid message in canonical form: minimal
// varnums and no bytes after the payload.
func canonical(b []byte) bool {
	m, err := DecodeMessage(b)
	if err != nil {
		return false
	}
	n := 5
	switch m.Op {
	case OpSet:
		n += len(ktproto.AppendVarnum(nil, uint64(len(m.Key)))) + len(ktproto.AppendVarnum(nil, uint64(len(m.Value))))
		n += len(m.Key) + len(m.Value)
	case OpRemove:
		n += len(ktproto.AppendVarnum(nil, uint64(len(m.Key)))) + len(m.Key)
	}
	return n == len(b)
}

func FuzzDecodeMessage(f *testing.F) {
	_, msgs := goldenSeeds(f)
	for _, m := range msgs {
		f.Add(m)
	}
	f.Add([]byte{0, 1, 0, 0, 0xA2, 0x80, 0x01, 'a'})
	f.Add([]byte{0, 1, 0, 0, 0xA7})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		enc := m.Append(nil)
		// Decoding the canonical encoding gives the same message back.
		m2, err := DecodeMessage(enc)
		if err != nil || m2.SID != m.SID || m2.DBID != m.DBID || m2.Op != m.Op ||
			!bytes.Equal(m2.Key, m.Key) || !bytes.Equal(m2.Value, m.Value) {
			t.Fatalf("re-decode of % x: %+v, %v; want %+v", enc, m2, err, m)
		}
		known := m.Op == OpSet || m.Op == OpRemove || m.Op == OpClear
		if known && canonical(b) && !bytes.Equal(enc, b) {
			t.Fatalf("Append(Decode(% x)) = % x", b, enc)
		}
		if !known && (m.Key != nil || m.Value != nil) {
			t.Fatalf("unknown op %#x has a payload", m.Op)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	frames, _ := goldenSeeds(f)
	for _, fr := range frames {
		f.Add(fr)
	}
	f.Add([]byte{0xBF})
	f.Add([]byte{0xB1, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0, 0, 0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		var buf, re []byte
		consumed := 0
		for {
			fr, nbuf, err := ReadFrame(br, buf)
			// Never allocate far beyond the input (allowing for size
			// classes).
			if cap(nbuf) > 2*max(growChunk, 2*len(b)) {
				t.Fatalf("buffer of %d bytes for %d bytes of input", cap(nbuf), len(b))
			}
			buf = nbuf
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && err != ErrMalformed && err != ErrRefused {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if fr.Nop {
				re = AppendNopFrame(re, fr.TS)
				consumed += 9
			} else {
				if len(fr.Msg) > MaxFrameSize {
					t.Fatalf("message of %d bytes", len(fr.Msg))
				}
				re = AppendDataFrame(re, fr.TS, fr.Msg)
				consumed += 13 + len(fr.Msg)
			}
		}
		if !bytes.Equal(re, b[:consumed]) {
			t.Fatalf("re-encoded frames % x, want % x", re, b[:consumed])
		}
	})
}

func FuzzReadULogFile(f *testing.F) {
	f.Add(goldenULog(f))
	f.Add(mustHex(f, "A0 0000000000000033 11F1B565F96C6D40 A1 11F1B565F96C6D40 00000014 0001 0000 A1 03 0A 6F6E65 FFFFFFFFFF 6669727374 A2"))
	f.Add(mustHex(f, "A0 7FFFFFFFFFFFFFFF 0000000000000000 A1 0000000000000001 7FFFFFFF 0001"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, lastTS, err := ReadULogFile(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
		}
		total := 0
		for _, r := range recs {
			total += 14 + len(r.Msg)
		}
		if total > len(b) {
			t.Fatalf("%d records of %d bytes from %d bytes of input", len(recs), total, len(b))
		}
		if err != nil {
			return
		}
		// Writing the records back gives a file that reads the same; it is
		// the input itself when there is no tail and last ts is the max.
		out := writeULog(t, recs)
		recs2, _, err := ReadULogFile(bytes.NewReader(out))
		if err != nil || len(recs2) != len(recs) {
			t.Fatalf("rewritten file: %d records, %v; want %d", len(recs2), err, len(recs))
		}
		var maxTS uint64
		for i, r := range recs {
			if recs2[i].TS != r.TS || !bytes.Equal(recs2[i].Msg, r.Msg) {
				t.Fatalf("record %d changed", i)
			}
			maxTS = max(maxTS, r.TS)
		}
		if lastTS == maxTS && len(out) <= len(b) && !bytes.Equal(out, b[:len(out)]) {
			t.Fatalf("rewritten file differs from the input")
		}
	})
}
