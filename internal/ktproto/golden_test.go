package ktproto

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ktdproject/ktd/internal/txtar"
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

// parseTxtar decodes every section of a golden file: ".hex" sections as
// commented hex, the others as escaped text.
func parseTxtar(raw []byte) ([]section, error) {
	_, parts := txtar.Split(raw)
	secs := make([]section, 0, len(parts))
	for _, p := range parts {
		var data []byte
		var err error
		if strings.HasSuffix(p.Name, ".hex") {
			data, err = txtar.DecodeHex(p.Data)
		} else {
			data, err = txtar.Unescape(p.Data)
		}
		if err != nil {
			return nil, fmt.Errorf("section %s at line %d: %w", p.Name, p.Line, err)
		}
		secs = append(secs, section{Name: p.Name, Data: data})
	}
	return secs, nil
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
