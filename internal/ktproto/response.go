package ktproto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ReadResponse reads one HTTP/1.x response from a KT server (client side):
// the status line, the headers and a Content-Length framed body, which KT
// always sends. It returns the status code and the body. The tools that
// drive servers over raw keep-alive connections use it.
func ReadResponse(br *bufio.Reader) (code int, body []byte, err error) {
	code, _, body, err = ReadResponseType(br)
	return code, body, err
}

// ReadResponseType is ReadResponse that also returns the Content-Type
// header ("" when absent), which says how a TSV body is encoded (ColEncOf).
func ReadResponseType(br *bufio.Reader) (code int, contentType string, body []byte, err error) {
	code, body, err = ReadResponseHeaders(br, false, func(name, value []byte) {
		if strings.EqualFold(string(name), "content-type") {
			contentType = string(value)
		}
	})
	return code, contentType, body, err
}

// ReadResponseHeaders is ReadResponse that hands every header to header
// (the name as sent, the value trimmed; both valid only during the call),
// when header is not nil. head says the response answers a HEAD request:
// its Content-Length describes a body that does not follow, and none is
// read.
func ReadResponseHeaders(br *bufio.Reader, head bool, header func(name, value []byte)) (code int, body []byte, err error) {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	f := strings.Fields(string(status))
	if len(f) < 2 {
		return 0, nil, fmt.Errorf("bad status line %q", status)
	}
	if code, err = strconv.Atoi(f[1]); err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", status)
	}
	clen := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		if header != nil {
			header(k, v)
		}
		if strings.EqualFold(string(k), "content-length") {
			if clen, err = strconv.Atoi(string(v)); err != nil || clen < 0 {
				return 0, nil, fmt.Errorf("bad content-length %q", v)
			}
		}
	}
	if head {
		return code, nil, nil
	}
	if clen < 0 {
		return 0, nil, errors.New("response without content-length")
	}
	if clen > MaxBody {
		return 0, nil, fmt.Errorf("response body of %d bytes is too large", clen)
	}
	body = make([]byte, clen)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, err
	}
	return code, body, nil
}
