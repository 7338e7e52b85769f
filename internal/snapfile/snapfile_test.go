package snapfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// goldenDir holds the snapshot files written by the real KT 0.9.56 and
// KC 1.2.79, with the exact records each holds (see its README.md).
const goldenDir = "../../conformance/testdata/golden/snapshots"

// indexRow is one line of INDEX.tsv.
type indexRow struct {
	file, format, compression, values, expected string
	count                                       int
	ts, size                                    uint64
}

func readIndex(t testing.TB) []indexRow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []indexRow
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		r := indexRow{file: f[0], format: f[1], compression: f[2], values: f[3], expected: f[4]}
		r.count, _ = strconv.Atoi(f[5])
		if f[6] != "-" {
			r.ts, _ = strconv.ParseUint(f[6], 10, 64)
			r.size, _ = strconv.ParseUint(f[7], 10, 64)
		}
		rows = append(rows, r)
	}
	if len(rows) != 23 {
		t.Fatalf("INDEX.tsv: %d rows, want 23", len(rows))
	}
	return rows
}

// expectedRecord is one line of an expected-records file.
type expectedRecord struct {
	xt    string // decimal xt of a kt file, "-" for plain values
	value string // hex of the value, or sha256:<hex>:<length>
}

func readExpected(t testing.TB, name string) map[string]expectedRecord {
	t.Helper()
	f, err := os.Open(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]expectedRecord{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		key, err := hex.DecodeString(f[0])
		if err != nil || len(f) != 3 {
			t.Fatalf("%s: bad line %q", name, line)
		}
		m[string(key)] = expectedRecord{xt: f[1], value: f[2]}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// describe renders a raw record value the way the expected files do
// (hashed when want is).
func describe(raw []byte, values string, want expectedRecord) expectedRecord {
	xt := "-"
	if values == "kt" {
		xt = strconv.FormatUint(uint64(raw[0])<<32|uint64(raw[1])<<24|uint64(raw[2])<<16|uint64(raw[3])<<8|uint64(raw[4]), 10)
		raw = raw[5:]
	}
	if strings.HasPrefix(want.value, "sha256:") {
		sum := sha256.Sum256(raw)
		return expectedRecord{xt, fmt.Sprintf("sha256:%x:%d", sum, len(raw))}
	}
	return expectedRecord{xt, hex.EncodeToString(raw)}
}

// readAll reads every record of a snapshot file.
func readAll(t testing.TB, data []byte) (Header, [][2][]byte) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var recs [][2][]byte
	for {
		k, v, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
	}
	if r.Records() != int64(len(recs)) || r.Offset() != int64(len(data)) {
		t.Fatalf("Records %d (read %d), Offset %d of %d", r.Records(), len(recs), r.Offset(), len(data))
	}
	return r.Header(), recs
}

func TestReader_Golden(t *testing.T) {
	for _, row := range readIndex(t) {
		t.Run(row.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(goldenDir, row.file))
			if err != nil {
				t.Fatal(err)
			}
			h, recs := readAll(t, data)
			if got, want := h.Format.String(), row.format; got != want {
				t.Errorf("format %s, want %s", got, want)
			}
			if got, want := h.Compression.String(), row.compression; got != want {
				t.Errorf("compression %s, want %s", got, want)
			}
			if h.TS != row.ts || h.Size != row.size || row.format == "ktss" && h.Count != uint64(row.count) {
				t.Errorf("header ts=%d count=%d size=%d, want %d %d %d", h.TS, h.Count, h.Size, row.ts, row.count, row.size)
			}
			want := readExpected(t, filepath.Join(row.expected))
			if len(recs) != len(want) || len(recs) != row.count {
				t.Fatalf("%d records, want %d (INDEX %d)", len(recs), len(want), row.count)
			}
			seen := map[string]bool{}
			for _, rec := range recs {
				k := string(rec[0])
				if seen[k] {
					t.Fatalf("key %q twice", k)
				}
				seen[k] = true
				w, ok := want[k]
				if !ok {
					t.Fatalf("unexpected key %q", k)
				}
				if got := describe(rec[1], row.values, w); got != w {
					t.Fatalf("key %q: %+v, want %+v", k, got, w)
				}
			}
		})
	}
}

// TestWriter_ReproducesKT writes the records of real KT and KC files, in
// their order, and gets the same bytes where the format leaves no choice:
// uncompressed KTSS and KCSS files. Compressed files are compared by their
// records and chunk layout (Go's deflate, xz and our LZO emit different,
// equally valid streams).
func TestWriter_ReproducesKT(t *testing.T) {
	for _, row := range readIndex(t) {
		t.Run(row.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(goldenDir, row.file))
			if err != nil {
				t.Fatal(err)
			}
			h, recs := readAll(t, data)
			var out bytes.Buffer
			w, err := NewWriter(&out, WriterConfig(h))
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if err := w.Add(rec[0], rec[1]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if h.Compression == None {
				if !bytes.Equal(out.Bytes(), data) {
					t.Fatalf("rewritten file differs from KT's (%d vs %d bytes)", out.Len(), len(data))
				}
				return
			}
			h2, recs2 := readAll(t, out.Bytes())
			if h2 != h || len(recs2) != len(recs) {
				t.Fatalf("header %+v, %d records; want %+v, %d", h2, len(recs2), h, len(recs))
			}
			for i := range recs {
				if !bytes.Equal(recs[i][0], recs2[i][0]) || !bytes.Equal(recs[i][1], recs2[i][1]) {
					t.Fatalf("record %d differs", i)
				}
			}
			if got, want := chunks(t, out.Bytes()), chunks(t, data); got != want {
				t.Fatalf("%d chunks, KT wrote %d", got, want)
			}
		})
	}
}

// chunks counts the chunks of a compressed KTSS file.
func chunks(t *testing.T, data []byte) int {
	n := 0
	for p := HeaderSize; p < len(data); n++ {
		p += 4 + int(uint32(data[p])<<24|uint32(data[p+1])<<16|uint32(data[p+2])<<8|uint32(data[p+3]))
	}
	return n
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var recs [][2][]byte
	size := 0
	for i := 0; size < 3<<20; i++ { // three chunks and more
		k := fmt.Appendf(nil, "key-%06d", i)
		v := make([]byte, rng.IntN(3000))
		for j := range v {
			v[j] = byte('a' + rng.IntN(4))
		}
		if i%97 == 0 {
			v = make([]byte, 200_000+rng.IntN(100))
		}
		recs = append(recs, [2][]byte{k, v})
		size += len(k) + len(v)
	}
	recs = append(recs, [2][]byte{{}, {}}, [2][]byte{make([]byte, 16384), make([]byte, 128)})
	for _, f := range []Format{KTSS, KCSS} {
		for _, c := range []Compression{None, Zlib, LZO, LZMA} {
			if f == KCSS && c != None {
				continue
			}
			t.Run(f.String()+"-"+c.String(), func(t *testing.T) {
				var buf bytes.Buffer
				cfg := WriterConfig{Format: f, Compression: c, TS: 1796423193963000000, Count: uint64(len(recs)), Size: uint64(size)}
				w, err := NewWriter(&buf, cfg)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					if err := w.Add(r[0], r[1]); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				h, got := readAll(t, buf.Bytes())
				if f == KTSS && (h.TS != cfg.TS || h.Count != cfg.Count || h.Size != cfg.Size || h.Compression != c) {
					t.Fatalf("header %+v", h)
				}
				if len(got) != len(recs) {
					t.Fatalf("%d records, want %d", len(got), len(recs))
				}
				for i := range recs {
					if !bytes.Equal(got[i][0], recs[i][0]) || !bytes.Equal(got[i][1], recs[i][1]) {
						t.Fatalf("record %d differs", i)
					}
				}
				if c != None && chunks(t, buf.Bytes()) < 3 {
					t.Fatalf("%d chunks", chunks(t, buf.Bytes()))
				}
			})
		}
	}
}

// readErr reads data to the end and returns the error that stopped it.
func readErr(data []byte) (int64, error) {
	r, err := NewReaderLimits(bytes.NewReader(data), Limits{MaxKey: 1 << 20, MaxValue: 1 << 20})
	if err != nil {
		return 0, err
	}
	for {
		if _, _, err := r.Next(); err != nil {
			if err == io.EOF {
				return r.Records(), nil
			}
			if _, _, again := r.Next(); again != err {
				return r.Records(), fmt.Errorf("error not sticky: %v then %v", err, again)
			}
			return r.Records(), err
		}
	}
}

// TestReader_Malformed feeds the damaged files KT itself half-loads or
// silently accepts (README "Loader behaviour of the real KT") and more:
// each must be refused with the offset of the defect.
func TestReader_Malformed(t *testing.T) {
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(goldenDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	none := read("bgs-none/00000002.ktss")
	zlib := read("bgs-zlib/00000002.ktss")
	multi := read("bgs-multichunk-zlib/00000000.ktss")
	kcss := read("kcdump-kt-kch.kcss")
	cat := func(a []byte, b ...byte) []byte { return append(bytes.Clone(a), b...) }
	patch := func(a []byte, at int, b ...byte) []byte {
		c := bytes.Clone(a)
		copy(c[at:], b)
		return c
	}
	lzoChunk := read("bgs-lzo/00000001.ktss")
	xzChunk := read("bgs-lzma/00000001.ktss")
	cases := []struct {
		name   string
		data   []byte
		offset int64  // of the Error
		reason string // part of it
	}{
		{"KT loads 40 records of it", none[:100_000], 100_000, "truncated record"},
		{"KT loads all and then fails", cat(none, 0, 0), int64(len(none)), "invalid record marker 0x00"},
		{"three trailing zeros", cat(none, 0, 0, 0), int64(len(none)), "invalid record marker"},
		{"header cut to 33 bytes: KT ignores the file", none[:33], 33, "truncated header"},
		{"KT loads the first chunk", multi[:len(multi)-10], int64(len(multi) - 10), "truncated chunk"},
		{"KT ignores 4 trailing bytes", cat(multi, 0xff, 0xff, 0xff, 0xff), int64(len(multi) + 4), "truncated chunk"},
		{"a trailing byte", cat(multi, 1), int64(len(multi) + 1), "truncated chunk"},
		{"empty chunk", cat(multi, 0, 0, 0, 0), int64(len(multi)), "empty chunk"},
		{"unknown checksum", patch(none, 6, 1, 2, 3, 4), 6, "unknown checksum"},
		{"not a snapshot", []byte("KTSX\n\x00"), 0, "not a KTSS or KCSS"},
		{"empty file", nil, 0, "not a KTSS or KCSS"},
		{"zlib chunk: two bytes after the stream", zlibExtra(zlib), 34, "unexpected bytes after the deflate stream"},
		{"zlib chunk damaged", patch(zlib, 1000, 0xde, 0xad, 0xbe, 0xef), 34, "decompress"},
		{"lzo chunk damaged", patch(lzoChunk, 40, 0xff, 0xff), 34, ""},
		{"xz chunk damaged", patch(xzChunk, 60, 0xff, 0xff, 0xff), 34, "decompress"},
		{"KCSS without its end marker", kcss[:len(kcss)-1], int64(len(kcss) - 1), "no end marker"},
		{"KCSS with bytes after the end marker", cat(kcss, 0), int64(len(kcss)), "after the end marker"},
		{"KCSS cut in a record", kcss[:5000], 5000, "truncated record"},
		{"bad marker in KCSS", patch(kcss, 6, 0xCC), 6, "invalid record marker 0xcc"},
		{"key over the limit", cat(none[:34], 0xCC, 0x81, 0x80, 0x80, 0x00, 0x00), 34, "key size 2097152 exceeds"},
		{"size overflowing 64 bits", cat(none[:34], 0xCC, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), 35, "overflows"},
		{"value claiming 1 MiB in a small file", cat(none[:34], 0xCC, 0x01, 0xbf, 0xff, 0x7f, 'k', 'v'), 41, "truncated record"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readErr(c.data)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.Offset != c.offset || !strings.Contains(e.Error(), c.reason) {
				t.Fatalf("err = %v; want offset %d and %q", err, c.offset, c.reason)
			}
		})
	}
}

// zlibExtra returns the first zlib file with two bytes after its deflate
// stream instead of KC's single NUL.
func zlibExtra(zlib []byte) []byte {
	zsiz := int(uint32(zlib[34])<<24 | uint32(zlib[35])<<16 | uint32(zlib[36])<<8 | uint32(zlib[37]))
	out := bytes.Clone(zlib[:34])
	out = append(out, byte((zsiz+1)>>24), byte((zsiz+1)>>16), byte((zsiz+1)>>8), byte(zsiz+1))
	out = append(out, zlib[38:38+zsiz]...)
	return append(out, 7)
}

func TestReader_ZlibWithoutNUL(t *testing.T) {
	// A deflate stream without KC's NUL (another writer's) is accepted.
	data, err := os.ReadFile(filepath.Join(goldenDir, "bgs-zlib/00000002.ktss"))
	if err != nil {
		t.Fatal(err)
	}
	zsiz := int(uint32(data[34])<<24 | uint32(data[35])<<16 | uint32(data[36])<<8 | uint32(data[37]))
	if data[38+zsiz-1] != 0 || len(data) != 38+zsiz {
		t.Fatal("expected one chunk ending with a NUL")
	}
	cut := bytes.Clone(data[:38+zsiz-1])
	cut[37]--
	if n, err := readErr(cut); err != nil || n != 200 {
		t.Fatalf("%d records, %v", n, err)
	}
}

func FuzzReader(f *testing.F) {
	for _, name := range []string{"bgs-extra-none/00000001.ktss", "bgs-extra-zlib/00000001.ktss",
		"bgs-extra-lzo/00000001.ktss", "bgs-extra-lzma/00000001.ktss", "bgs-extra-none/00000000.ktss",
		"bgs-multichunk-lzma/00000000.ktss"} {
		data, err := os.ReadFile(filepath.Join(goldenDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("KCSS\n\x00\x00\x01\x02k\x00v\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxKey: 4096, MaxValue: 1 << 16, MaxChunk: 1 << 20}
		r, err := NewReaderLimits(bytes.NewReader(data), lim)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("NewReader: %T %v", err, err)
			}
			return
		}
		h := r.Header()
		var recs [][2][]byte
		for {
			k, v, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Offset < 0 || e.Offset > int64(len(data)) {
					t.Fatalf("Next: %T %v", err, err)
				}
				return
			}
			recs = append(recs, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		}
		// A file read to the end rewrites to a file with the same records.
		var buf bytes.Buffer
		w, err := NewWriter(&buf, WriterConfig(h))
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if err := w.Add(rec[0], rec[1]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		h2, got := readAll(t, buf.Bytes())
		if h2 != h || len(got) != len(recs) {
			t.Fatalf("rewritten: %+v %d records; want %+v %d", h2, len(got), h, len(recs))
		}
		for i := range recs {
			if !bytes.Equal(got[i][0], recs[i][0]) || !bytes.Equal(got[i][1], recs[i][1]) {
				t.Fatalf("record %d differs after rewriting", i)
			}
		}
	})
}
