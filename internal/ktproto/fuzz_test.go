package ktproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"strconv"
	"strings"
	"testing"
)

// chunkReader returns its data in pieces whose sizes come from sizes
// (cycled), to exercise reads that split lines and bodies anywhere.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)])%64 + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// goldenRequestSeeds returns every recorded request section.
func goldenRequestSeeds(f *testing.F, hexToo bool) [][]byte {
	var seeds [][]byte
	for _, sub := range []string{"http", "binary"} {
		for _, g := range loadGolden(f, sub) {
			for _, s := range g.Sections {
				if s.Name == "request" || (hexToo && s.Name == "request.hex") {
					seeds = append(seeds, s.Data)
				}
			}
		}
	}
	return seeds
}

// reconstruct writes req back as a request KT parses the same way.
func reconstruct(req *Request) []byte {
	var b []byte
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.Target...)
	b = append(b, " HTTP/1."...)
	b = append(b, byte('0'+req.Minor))
	b = append(b, "\r\n"...)
	if req.KeepAlive != (req.Minor == 1) {
		if req.KeepAlive {
			b = append(b, "Connection: keep-alive\r\n"...)
		} else {
			b = append(b, "Connection: close\r\n"...)
		}
	}
	if req.Body != nil {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(req.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, req.Body...)
}

func FuzzReadRequest(f *testing.F) {
	for _, s := range goldenRequestSeeds(f, false) {
		f.Add(s, []byte{7})
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte{0, 1, 2})
	f.Add([]byte("POST /rpc/set HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), []byte{1})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		br := bufio.NewReaderSize(&chunkReader{data: data, sizes: sizes}, 16)
		// A RequestReader over the same input reads the same requests.
		br2 := bufio.NewReaderSize(&chunkReader{data: data, sizes: sizes}, 16)
		var rr RequestReader
		lim := &Limits{MaxBody: 1 << 16}
		for range 100 {
			req, err := ReadRequest(br, 1<<16)
			req2, err2 := rr.Read(br2, lim)
			if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
				t.Fatalf("ReadRequest: %v, RequestReader: %v", err, err2)
			}
			if err == nil && (req.Method != req2.Method || req.Target != req2.Target || req.Path != req2.Path ||
				req.Query != req2.Query || req.Minor != req2.Minor || req.KeepAlive != req2.KeepAlive ||
				!bytes.Equal(req.Body, req2.Body) || !maps.Equal(req.Header, req2.Header)) {
				t.Fatalf("ReadRequest: %+v, RequestReader: %+v", *req, *req2)
			}
			if err != nil {
				var se *StatusError
				if err != io.EOF && !errors.Is(err, ErrDrop) && !errors.As(err, &se) {
					t.Fatalf("unexpected error type %T %v", err, err)
				}
				return
			}
			if req.Path == "" || req.Target[:len(req.Path)] != req.Path {
				t.Fatalf("bad path %q of %q", req.Path, req.Target)
			}
			if req.Method == "GET" || req.Method == "HEAD" || req.Method == "DELETE" {
				if req.Body != nil {
					t.Fatalf("body read for %s", req.Method)
				}
			}
			// Method, target, version, keep-alive and body survive a
			// canonical re-serialisation (unless the target or method hold
			// bytes that cannot appear in a request line).
			if strings.ContainsAny(req.Method+req.Target, " \r\n\x00") || req.Method == "" {
				continue
			}
			again, err := ReadRequest(bufio.NewReader(bytes.NewReader(reconstruct(req))), 1<<16)
			if err != nil {
				t.Fatalf("reconstruction of %+v failed: %v", req, err)
			}
			if again.Method != req.Method || again.Target != req.Target || again.Minor != req.Minor ||
				again.KeepAlive != req.KeepAlive || !bytes.Equal(again.Body, req.Body) || again.Query != req.Query {
				t.Fatalf("unstable: %+v vs %+v", req, again)
			}
		}
	})
}

// mapFromPairs builds the map AppendTSV's dedup semantics imply.
func mapFromPairs(kvs []KV) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// pairsFromBytes splits fuzz data into name/value pairs at 0xFE bytes.
func pairsFromBytes(data []byte) []KV {
	parts := bytes.Split(data, []byte{0xFE})
	var kvs []KV
	for i := 0; i+1 < len(parts); i += 2 {
		kvs = append(kvs, KV{string(parts[i]), string(parts[i+1])})
	}
	return kvs
}

func FuzzParseTSV(f *testing.F) {
	f.Add([]byte("a\t1\r\nb\t2\t3\nnotab\n"), byte(0), []byte("k\xfev\xfe\x00\xfe\x01"))
	f.Add([]byte("a2V5\tdmFs\n"), byte('B'), []byte("value\xfe\x00\x00\x05"))
	f.Add([]byte("k%31\tv%09x\n"), byte('U'), []byte("\x7f\xfe1\xfe~\xfe\x01"))
	f.Add([]byte("k=31\tv=09\n"), byte('Q'), []byte(strings.Repeat("x", 300)+"\xfe"))
	f.Fuzz(func(t *testing.T, body []byte, colenc byte, pairs []byte) {
		m := map[string]string{}
		ParseTSV(body, colenc, m)
		ParseInput(string(body), "text/tab-separated-values; colenc="+string(rune(colenc)), body)
		ParseInput(string(body), ContentTypeForm, body)

		kvs := pairsFromBytes(pairs)
		want := mapFromPairs(kvs)
		out, ct := AppendTSV(nil, kvs)
		got := map[string]string{}
		ParseTSV(out, ColEncOf(ct), got)
		if ColEncOf(ct) == 0 {
			// Raw output is only chosen when no field holds control bytes,
			// so TAB/LF/CR cannot break the framing.
			for k, v := range want {
				if strings.ContainsAny(k+v, "\t\n\r") {
					t.Fatalf("raw output with control bytes %q", k+v)
				}
			}
		}
		if !maps.Equal(got, want) {
			t.Fatalf("round trip via %q:\n got %q\nwant %q\nbody %q", ct, got, want, out)
		}
		// The output is sorted by line.
		lines := bytes.SplitAfter(out, []byte{'\n'})
		for i := 1; i < len(lines)-1; i++ {
			a, _, _ := bytes.Cut(lines[i-1], []byte{'\t'})
			b, _, _ := bytes.Cut(lines[i], []byte{'\t'})
			if bytes.Compare(a, b) >= 0 {
				t.Fatalf("unsorted output %q", out)
			}
		}
	})
}

func FuzzColEnc(f *testing.F) {
	f.Add("text/tab-separated-values; colenc=B", []byte("x"))
	f.Add("text/tab-separated-values;colenc=\"u", []byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, ct string, data []byte) {
		if c := ColEncOf(ct); c != 0 && c != 'B' && c != 'Q' && c != 'U' {
			t.Fatalf("ColEncOf(%q) = %q", ct, c)
		}
		s := string(data)
		QuotedPrintableDecode(s)
		Base64Decode(s)
		if got := Base64Decode(string(AppendBase64(nil, s))); got != s {
			t.Fatalf("base64 round trip %q -> %q", s, got)
		}
	})
}

func FuzzURLCodec(f *testing.F) {
	f.Add("a b+c%zz\x00\xff~")
	f.Add("%E6%9D%B1")
	f.Fuzz(func(t *testing.T, s string) {
		dec := URLDecode(s)
		// Every byte survives AppendURLEncode + URLDecode: the encoder
		// escapes NUL, '+', '%', controls and high bytes.
		if got := URLDecode(string(AppendURLEncode(nil, s))); got != s {
			t.Fatalf("round trip %q -> %q", s, got)
		}
		if len(dec) > len(s) {
			t.Fatalf("decode grew %q -> %q", s, dec)
		}
		m := map[string]string{}
		ParseForm([]byte(s), m)
		// Form round trip: encoded pairs parse back to the same map.
		kvs := pairsFromBytes([]byte(s))
		var form []byte
		for i, kv := range kvs {
			if i > 0 {
				form = append(form, '&')
			}
			form = AppendURLEncode(form, kv.Key)
			form = append(form, '=')
			form = AppendURLEncode(form, kv.Value)
		}
		got := map[string]string{}
		ParseForm(form, got)
		want := mapFromPairs(kvs)
		if len(kvs) > 0 && !maps.Equal(got, want) {
			t.Fatalf("form round trip %q: got %q want %q", form, got, want)
		}
	})
}

func FuzzParseKTTime(f *testing.F) {
	for _, s := range []string{"7258118400", "0x10", "60s", "2100-01-01T09:00:00+09:00", "2100/01/01 10:20:30",
		"Fri, 01 Jan 2100 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 +0100", "tomorrow", "-5", "9999999999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParseKTTime(s)
		Atoi(s)
		_ = Atoix(s)
		Atof(s)
	})
}

func FuzzBinaryFrames(f *testing.F) {
	for _, s := range goldenRequestSeeds(f, true) {
		f.Add(s)
	}
	f.Add(AppendSetBulkRequest(nil, 1, []BulkRecord{{DBIdx: 1, Key: []byte("k"), Value: []byte("v"), XT: -5}}))
	f.Add(AppendPlayScriptRequest(nil, 0, "echo", []KV{{"a", "b"}}))
	f.Add(AppendVarnum(nil, 16384))
	f.Fuzz(func(t *testing.T, data []byte) {
		ReadVarnum(data)
		if len(data) == 0 {
			return
		}
		rd := func() *bufio.Reader { return bufio.NewReader(bytes.NewReader(data[1:])) }
		if flags, recs, err := ReadSetBulk(rd()); err == nil {
			re := AppendSetBulkRequest(nil, flags, recs)
			if !bytes.HasPrefix(append([]byte{MagicSetBulk}, data[1:]...), re) {
				t.Fatalf("set_bulk re-encode %x not a prefix of %x", re, data)
			}
		}
		if flags, recs, err := ReadKeyBulk(rd()); err == nil {
			re := AppendKeyBulkRequest(nil, MagicGetBulk, flags, recs)
			if !bytes.HasPrefix(append([]byte{MagicGetBulk}, data[1:]...), re) {
				t.Fatalf("key bulk re-encode mismatch")
			}
		}
		if flags, name, args, err := ReadPlayScript(rd()); err == nil {
			re := AppendPlayScriptRequest(nil, flags, name, args)
			if !bytes.HasPrefix(append([]byte{MagicPlayScript}, data[1:]...), re) {
				t.Fatalf("play_script re-encode mismatch")
			}
		}
		if recs, err := ReadGetBulkReply(rd()); err == nil {
			re := AppendGetBulkReply(nil, recs)
			if !bytes.HasPrefix(append([]byte{MagicGetBulk}, data[1:]...), re) {
				t.Fatalf("get_bulk reply re-encode mismatch")
			}
		}
		ReadReplRequest(rd())
		// Varnum round trip on 8 bytes of the input.
		if len(data) >= 8 {
			v := uint64(0)
			for _, c := range data[:8] {
				v = v<<8 | uint64(c)
			}
			if got, n := ReadVarnum(AppendVarnum(nil, v)); got != v || n == 0 {
				t.Fatalf("varnum %d -> %d", v, got)
			}
		}
	})
}

// FuzzReadResponse: any input gives a response or an error, never a panic,
// and a body is exactly as long as its Content-Length.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nvalue\t1\n"))
	f.Add([]byte("HTTP/1.1 450 Logical Inconsistency\r\ncontent-length:0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, body, err := ReadResponse(bufio.NewReader(bytes.NewReader(in)))
		if err == nil && len(body) > len(in) {
			t.Fatalf("body of %d bytes from %d bytes of input", len(body), len(in))
		}
	})
}
