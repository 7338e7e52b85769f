package ktproto

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenDir is the in-repo copy of the recordings of the real KT server.
const goldenDir = "../../conformance/testdata/golden"

// section is one "-- name --" part of a golden txtar file, decoded.
type section struct {
	Name string
	Data []byte
}

type goldenFile struct {
	Path     string
	Sections []section
}

// loadGolden reads every *.txtar in goldenDir/sub.
func loadGolden(tb testing.TB, sub string) []goldenFile {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(goldenDir, sub, "*.txtar"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		tb.Skipf("no golden files in %s", filepath.Join(goldenDir, sub))
	}
	var files []goldenFile
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		secs, err := parseTxtar(raw)
		if err != nil {
			tb.Fatalf("%s: %v", p, err)
		}
		files = append(files, goldenFile{Path: p, Sections: secs})
	}
	return files
}

func parseTxtar(raw []byte) ([]section, error) {
	var secs []section
	var cur *section
	var body []string
	flush := func() error {
		if cur == nil {
			return nil
		}
		var err error
		if strings.HasSuffix(cur.Name, ".hex") {
			cur.Data, err = decodeHexSection(body)
		} else {
			cur.Data, err = decodeEscaped(strings.Join(body, ""))
		}
		secs = append(secs, *cur)
		return err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") && len(line) > 6 {
			if err := flush(); err != nil {
				return nil, err
			}
			cur = &section{Name: line[3 : len(line)-3]}
			body = nil
			continue
		}
		if cur != nil {
			body = append(body, line)
		}
	}
	return secs, flush()
}

// decodeEscaped undoes \\ \t \r \n \xHH after the line breaks were removed.
func decodeEscaped(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return nil, errBadEscape
		}
		switch s[i] {
		case '\\':
			out = append(out, '\\')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 'x':
			if i+3 > len(s) {
				return nil, errBadEscape
			}
			b, err := hex.DecodeString(s[i+1 : i+3])
			if err != nil {
				return nil, err
			}
			out = append(out, b[0])
			i += 2
		default:
			return nil, errBadEscape
		}
	}
	return out, nil
}

type goldenErr string

func (e goldenErr) Error() string { return string(e) }

const errBadEscape = goldenErr("bad escape in golden section")

func decodeHexSection(lines []string) ([]byte, error) {
	var sb strings.Builder
	for _, l := range lines {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		sb.WriteString(strings.Join(strings.Fields(l), ""))
	}
	return hex.DecodeString(sb.String())
}

// splitResponse cuts the first HTTP response off stream. head says the
// request was HEAD, so no body follows whatever Content-Length says.
func splitResponse(stream []byte, head bool) (resp, rest []byte, ok bool) {
	end := bytes.Index(stream, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, stream, false
	}
	hdr := stream[:end+4]
	n := 0
	if !head {
		for _, l := range strings.Split(string(hdr), "\r\n") {
			if v, found := strings.CutPrefix(l, "Content-Length: "); found {
				n = int(Atoi(v))
			}
		}
	}
	if len(stream) < end+4+n {
		return nil, stream, false
	}
	return stream[:end+4+n], stream[end+4+n:], true
}

// responseHeader returns the value of header name in a recorded response.
func responseHeader(resp []byte, name string) (string, bool) {
	end := bytes.Index(resp, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(resp[:end]), "\r\n")[1:] {
		if v, found := strings.CutPrefix(l, name+": "); found {
			return v, true
		}
	}
	return "", false
}

func responseBody(resp []byte) []byte {
	return resp[bytes.Index(resp, []byte("\r\n\r\n"))+4:]
}
