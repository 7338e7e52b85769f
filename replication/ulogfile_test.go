package replication

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// memFile is an in-memory io.WriteSeeker.
type memFile struct {
	b   []byte
	off int64
}

func (m *memFile) Write(p []byte) (int, error) {
	if end := m.off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[m.off:], p)
	m.off += int64(len(p))
	return len(p), nil
}

func (m *memFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += m.off
	case io.SeekEnd:
		off += int64(len(m.b))
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	m.off = off
	return off, nil
}

func goldenULog(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "master-ulog", "0000000001.ulog"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeULog writes records with a ULogFileWriter into memory.
func writeULog(t testing.TB, recs []FileRecord) []byte {
	t.Helper()
	var mf memFile
	w, err := NewULogFileWriter(&mf)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r.TS, r.Msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Size() != int64(len(mf.b)) {
		t.Errorf("Size() = %d, file has %d bytes", w.Size(), len(mf.b))
	}
	return mf.b
}

func TestGoldenULogFile(t *testing.T) {
	file := goldenULog(t)
	if len(file) != 292 {
		t.Fatalf("golden ulog has %d bytes, want 292", len(file))
	}
	// The txtar decoding is the same bytes.
	for _, sec := range readTxtar(t, filepath.Join(goldenDir, "master-ulog.txtar")) {
		if sec.name == "0000000001.ulog.hex" && !bytes.Equal(unhex(t, sec.text), file) {
			t.Error("master-ulog.txtar differs from master-ulog/0000000001.ulog")
		}
	}

	recs, lastTS, err := ReadULogFile(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(scriptMessages) {
		t.Fatalf("%d records, want %d", len(recs), len(scriptMessages))
	}
	for i, r := range recs {
		checkMsg(t, fmt.Sprintf("record %d", i), r.Msg, 0, scriptMessages[i])
		if i > 0 && r.TS <= recs[i-1].TS {
			t.Errorf("record %d: ts %d not after %d", i, r.TS, recs[i-1].TS)
		}
		if ms := r.TS / 1e6; ms < 1.7e12 || ms > 1.9e12 {
			t.Errorf("record %d: ts %d is not epoch ms * 1e6 + counter", i, r.TS)
		}
	}
	if lastTS != recs[len(recs)-1].TS {
		t.Errorf("header last ts %d, last record ts %d", lastTS, recs[len(recs)-1].TS)
	}

	if got := writeULog(t, recs); !bytes.Equal(got, file) {
		t.Errorf("rewritten ulog differs:\n% x\nwant\n% x", got, file)
	}

	// Bytes beyond the header's size (an interrupted flush) are ignored.
	withTail := append(bytes.Clone(file), 0xA1, 0x00, 0x01)
	recs2, lastTS2, err := ReadULogFile(bytes.NewReader(withTail))
	if err != nil || len(recs2) != 9 || lastTS2 != lastTS {
		t.Errorf("with trailing bytes: %d records, %v", len(recs2), err)
	}
	// A header claiming fewer bytes ends the file there.
	short := withSize(file, 17+34) // only record 0 (34 bytes)
	recs3, _, err := ReadULogFile(bytes.NewReader(short))
	if err != nil || len(recs3) != 1 {
		t.Errorf("header size 51: %d records, %v", len(recs3), err)
	}
}

// TestT15 checks the on-disk vector of kt-protocol.md §16 T15.
func TestT15(t *testing.T) {
	const ts = 1293014017613000000
	want := mustHex(t, `
		A0 0000000000000033 11F1B565F96C6D40
		A1 11F1B565F96C6D40 00000014 0001 0000 A1 03 0A 6F6E65 FFFFFFFFFF 6669727374 A2`)
	msg := (&Message{SID: 1, Op: OpSet, Key: []byte("one"), Value: mustHex(t, "FFFFFFFFFF 6669727374")}).Append(nil)
	got := writeULog(t, []FileRecord{{TS: ts, Msg: msg}})
	if !bytes.Equal(got, want) {
		t.Errorf("ulog\n% x\nwant\n% x", got, want)
	}
	recs, lastTS, err := ReadULogFile(bytes.NewReader(want))
	if err != nil || len(recs) != 1 || recs[0].TS != ts || !bytes.Equal(recs[0].Msg, msg) || lastTS != ts {
		t.Errorf("ReadULogFile = %+v, %d, %v", recs, lastTS, err)
	}
	if got := AppendRTS(nil, ts); string(got) != "01293014017613000000\n" {
		t.Errorf("rts %q", got)
	}
}

func TestReadULogFileErrors(t *testing.T) {
	file := goldenULog(t)
	for _, tc := range []struct {
		name     string
		data     []byte
		nrecs    int
		truncEOF bool
	}{
		{"empty", nil, 0, true},
		{"short header", file[:10], 0, true},
		{"bad magic", append([]byte{0xA1}, file[1:]...), 0, false},
		{"size below header", append([]byte{0xA0, 0, 0, 0, 0, 0, 0, 0, 16}, file[9:]...), 0, false},
		{"cut inside record 2", file[:17+34+35+5], 2, true},
		{"cut before end byte", file[:17+34+35-1], 1, true},
		{"bad record magic", patch(file, 17+34, 0xA3), 1, false},
		{"bad end magic", patch(file, 17+34-1, 0x00), 0, false},
		{"msiz past size", patch(file, 17+11, 0xFF), 0, false},
		{"size inside a record", withSize(file, 17+34+5), 1, false},
	} {
		recs, _, err := ReadULogFile(bytes.NewReader(tc.data))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", tc.name, err)
		}
		if tc.truncEOF != errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: err %v, io.ErrUnexpectedEOF expected %v", tc.name, err, tc.truncEOF)
		}
		if len(recs) != tc.nrecs {
			t.Errorf("%s: %d records before the error, want %d", tc.name, len(recs), tc.nrecs)
		}
	}

	// A header claiming a huge size with little data must not allocate it.
	huge := mustHex(t, "A0 7FFFFFFFFFFFFFFF 0000000000000000 A1 0000000000000001 7FFFFFFF 0001")
	if _, _, err := ReadULogFile(bytes.NewReader(huge)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("huge: %v", err)
	}
	// A header-only file is an empty log.
	recs, lastTS, err := ReadULogFile(bytes.NewReader(mustHex(t, "A0 0000000000000011 0000000000000007")))
	if err != nil || len(recs) != 0 || lastTS != 7 {
		t.Errorf("header only: %v, %d, %v", recs, lastTS, err)
	}
}

func withSize(b []byte, size uint64) []byte {
	b = bytes.Clone(b)
	binary.BigEndian.PutUint64(b[1:], size)
	return b
}

func patch(b []byte, off int, v byte) []byte {
	b = bytes.Clone(b)
	b[off] = v
	return b
}

func TestULogFileWriter(t *testing.T) {
	// Before Close the placeholder header reads as an empty file: a crash
	// mid-file loses records but leaves a valid ulog.
	var mf memFile
	mf.Write([]byte("junk")) // the writer starts at the current offset
	w, err := NewULogFileWriter(&mf)
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != ULogHeaderSize {
		t.Errorf("Size() = %d before any record", w.Size())
	}
	msg := mustHex(t, "0001 0000 A5")
	for _, ts := range []uint64{5, 9, 7} {
		if err := w.Write(ts, msg); err != nil {
			t.Fatal(err)
		}
	}
	recs, _, err := ReadULogFile(bytes.NewReader(mf.b[4:]))
	if err != nil || len(recs) != 0 {
		t.Errorf("before Close: %d records, %v", len(recs), err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(11, msg); err != nil {
		t.Fatal(err)
	}
	recs, lastTS, err := ReadULogFile(bytes.NewReader(mf.b[4:]))
	if err != nil || len(recs) != 3 || lastTS != 9 {
		t.Errorf("after Flush: %d records, last ts %d, %v", len(recs), lastTS, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if string(mf.b[:4]) != "junk" {
		t.Error("writer touched bytes before its start offset")
	}
	if mf.off != int64(len(mf.b)) {
		t.Errorf("after Close the writer is at %d, file ends at %d", mf.off, len(mf.b))
	}
	recs, lastTS, err = ReadULogFile(bytes.NewReader(mf.b[4:]))
	if err != nil || len(recs) != 4 || lastTS != 11 || w.LastTS() != 11 {
		t.Errorf("after Close: %d records, last ts %d, %v", len(recs), lastTS, err)
	}
	if w.Size() != int64(len(mf.b)-4) || w.Size() != 17+4*(14+5) {
		t.Errorf("Size() = %d, file %d", w.Size(), len(mf.b)-4)
	}
	if err := w.Write(12, msg); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestULogFileWriterOSFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), ULogFileName(1))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, _, err := ReadULogFile(bytes.NewReader(goldenULog(t)))
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewULogFileWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r.TS, r.Msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, goldenULog(t)) {
		t.Error("ulog written to an *os.File differs from the recording")
	}
}

func TestULogFileName(t *testing.T) {
	if got := ULogFileName(1); got != "0000000001.ulog" {
		t.Errorf("ULogFileName(1) = %q", got)
	}
	if got := ULogFileName(4294967295); got != "4294967295.ulog" {
		t.Errorf("ULogFileName(max u32) = %q", got)
	}
	for name, want := range map[string]int{"0000000001.ulog": 1, "0000000123.ulog": 123, "12345678901.ulog": 12345678901} {
		if id, ok := ParseULogFileName(name); !ok || id != want {
			t.Errorf("ParseULogFileName(%q) = %d, %v", name, id, ok)
		}
	}
	for _, name := range []string{".ulog", "x.ulog", "0000000001.ulo", "00000001a.ulog", "-1.ulog", "+1.ulog", "0000000001.ulog.tmp"} {
		if _, ok := ParseULogFileName(name); ok {
			t.Errorf("ParseULogFileName(%q) accepted", name)
		}
	}
}
