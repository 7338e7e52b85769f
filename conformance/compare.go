package conformance

import (
	"bytes"
	"fmt"
	"strings"
)

// defaultServer is the Server header value of KT 0.9.56.
const defaultServer = "KyotoTycoon/0.9.56"

// Normalize rewrites the HTTP response heads found in got so that it can be
// compared with the recording want: the Date value becomes "<date>", the
// Server value becomes the one recorded in want, and in Location values the
// target's port becomes RecordedPort. Nothing else changes: bodies, binary
// bytes and Content-Length stay as received.
//
// A head is recognised where "HTTP/1." starts; its body is skipped using its
// Content-Length when the bytes after it are the end or another response,
// otherwise the search for the next head resumes after the head.
func Normalize(got, want []byte, port string) []byte {
	server := recordedServer(want)
	var out []byte
	pos := 0
	for pos < len(got) {
		i := bytes.Index(got[pos:], []byte("HTTP/1."))
		if i < 0 {
			break
		}
		start := pos + i
		end := bytes.Index(got[start:], []byte("\r\n\r\n"))
		if end < 0 {
			break // an incomplete head is compared as it is
		}
		end += start + 4
		out = append(out, got[pos:start]...)
		head, cl := normalizeHead(got[start:end], server, port)
		out = append(out, head...)
		pos = end
		if next := pos + cl; cl > 0 && next <= len(got) &&
			(next == len(got) || bytes.HasPrefix(got[next:], []byte("HTTP/"))) {
			out = append(out, got[pos:next]...)
			pos = next
		}
	}
	return append(out, got[pos:]...)
}

// recordedServer returns the first Server header value in want.
func recordedServer(want []byte) string {
	for l := range strings.SplitSeq(string(want), "\r\n") {
		if v, ok := strings.CutPrefix(l, "Server: "); ok {
			return v
		}
	}
	return defaultServer
}

// normalizeHead rewrites one response head (ending in CRLF CRLF) and
// returns it with its Content-Length (0 if absent or invalid).
func normalizeHead(head []byte, server, port string) ([]byte, int) {
	lines := strings.Split(string(head), "\r\n")
	cl := 0
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "Date: "):
			lines[i] = "Date: <date>"
		case strings.HasPrefix(l, "Server: "):
			lines[i] = "Server: " + server
		case strings.HasPrefix(l, "Location: "):
			lines[i] = "Location: " + normalizeLocation(l[len("Location: "):], port)
		case strings.HasPrefix(l, "Content-Length: "):
			fmt.Sscanf(l[len("Content-Length: "):], "%d", &cl)
		}
	}
	return []byte(strings.Join(lines, "\r\n")), max(cl, 0)
}

// normalizeLocation replaces ":port" right after the host of an http://
// URL with ":23978". KT appends the request target verbatim, so the port
// may be followed by anything ("http://localhost:23978japan").
func normalizeLocation(v, port string) string {
	rest, ok := strings.CutPrefix(v, "http://")
	if !ok || port == "" || port == RecordedPort {
		return v
	}
	host, after, ok := strings.Cut(rest, ":"+port)
	if !ok || strings.ContainsAny(host, "/:") {
		return v
	}
	return "http://" + host + ":" + RecordedPort + after
}

// diffWindow is how many bytes around the first difference a diff shows.
const diffWindow = 40

// Diff describes how got differs from want, or returns "" when they are
// equal: the first differing byte offset, both lengths and a window of
// each side around the offset, escaped (or in hex when asHex).
func Diff(got, want []byte, asHex bool) string {
	if bytes.Equal(got, want) {
		return ""
	}
	off := 0
	for off < len(got) && off < len(want) && got[off] == want[off] {
		off++
	}
	from := max(off-diffWindow, 0)
	return fmt.Sprintf("first difference at byte %d (got %d bytes, want %d)\n  want: %s\n  got:  %s",
		off, len(got), len(want), window(want, from, asHex), window(got, from, asHex))
}

func window(b []byte, from int, asHex bool) string {
	if from > len(b) {
		from = len(b)
	}
	to := min(from+2*diffWindow, len(b))
	var s string
	if asHex {
		s = fmt.Sprintf("% x", b[from:to])
	} else {
		s = Escape(b[from:to])
	}
	if from > 0 {
		s = "…" + s
	}
	if to < len(b) {
		s += "…"
	}
	if len(b) == 0 {
		s = "(nothing)"
	}
	return s
}
