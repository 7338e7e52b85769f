// Package txtar reads the project's recordings: txtar archives (a comment,
// then "-- name --" sections) whose sections hold escaped text or commented
// hex. It is the one reader the conformance suite, the codecs' golden tests and
// the harnesses share.
package txtar

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
)

// Section is one "-- name --" part of an archive.
type Section struct {
	Name string
	Data []byte // up to the next marker, line breaks included
	Line int    // 1-based line number of the marker
}

// Split splits an archive into its comment and sections, like
// golang.org/x/tools/txtar: a marker is a whole line "-- NAME --"; section
// data runs up to the next marker, line breaks included.
func Split(data []byte) (comment []byte, sections []Section) {
	var cur *Section
	line := 0
	for len(data) > 0 {
		line++
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l = data[:i+1]
		}
		data = data[len(l):]
		if name, ok := marker(l); ok {
			sections = append(sections, Section{Name: name, Line: line})
			cur = &sections[len(sections)-1]
			continue
		}
		if cur == nil {
			comment = append(comment, l...)
		} else {
			cur.Data = append(cur.Data, l...)
		}
	}
	return comment, sections
}

// marker reports whether line is a txtar file marker and returns its name.
func marker(line []byte) (string, bool) {
	l := strings.TrimRight(string(line), "\r\n")
	if !strings.HasPrefix(l, "-- ") || !strings.HasSuffix(l, " --") || len(l) < 6 {
		return "", false
	}
	name := strings.TrimSpace(l[3 : len(l)-3])
	return name, name != ""
}

// Unescape decodes an escaped-text section: every line break is removed
// (layout only), then \\, \t, \r, \n and \xHH are undone; every other byte
// stands for itself.
func Unescape(text []byte) ([]byte, error) {
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '\n' || c == '\r':
			continue
		case c != '\\':
			out = append(out, c)
			continue
		}
		if i+1 >= len(text) {
			return nil, fmt.Errorf("trailing backslash")
		}
		i++
		switch text[i] {
		case '\\':
			out = append(out, '\\')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 'x':
			if i+2 >= len(text) {
				return nil, fmt.Errorf("truncated \\x escape")
			}
			var b [1]byte
			if _, err := hex.Decode(b[:], text[i+1:i+3]); err != nil {
				return nil, fmt.Errorf("bad \\x escape %q", text[i-1:i+3])
			}
			out = append(out, b[0])
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c", text[i])
		}
	}
	return out, nil
}

// Escape is the inverse of Unescape without the layout line breaks: TAB,
// CR, LF and backslash as \t \r \n \\, other bytes outside 0x20-0x7E as
// \xHH (lower-case hex).
func Escape(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\\':
			sb.WriteString(`\\`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&sb, `\x%02x`, c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// DecodeHex decodes a commented hex section: '#' starts a comment running
// to the end of the line; whitespace is ignored.
func DecodeHex(text []byte) ([]byte, error) {
	var digits []byte
	for _, l := range bytes.Split(text, []byte("\n")) {
		if i := bytes.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		for _, c := range l {
			if c != ' ' && c != '\t' && c != '\r' {
				digits = append(digits, c)
			}
		}
	}
	out := make([]byte, hex.DecodedLen(len(digits)))
	if _, err := hex.Decode(out, digits); err != nil {
		return nil, fmt.Errorf("hex: %w", err)
	}
	return out, nil
}
