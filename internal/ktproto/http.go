package ktproto

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"time"
)

// MaxBody is KT's request body limit (256 MiB, HTTPClient::RECVMAXSIZ).
const MaxBody = 1 << 28

// maxLine is the number of bytes KT keeps of one request or header line: it
// reads lines into an 8192-byte buffer (HTTPClient::LINEBUFSIZ) including the
// terminating NUL.
const maxLine = 8191

// Request is one parsed HTTP/1.x request. All fields are owned copies: they
// stay valid after the next ReadRequest call.
type Request struct {
	Method    string            // as sent: "GET", "HEAD", "POST", "PUT", "DELETE", or anything else (case preserved)
	Target    string            // raw request target as sent (may lack leading '/', may hold '?query')
	Path      string            // Target before the first '?'
	Query     string            // Target after the first '?' ("" if none)
	Minor     int               // 0 for HTTP/1.0, 1 for HTTP/1.1
	Header    map[string]string // names lower-cased and whitespace-normalised, values with leading spaces trimmed; last duplicate wins
	Body      []byte            // read only for POST, PUT and unknown methods (never for GET/HEAD/DELETE); nil if none
	KeepAlive bool              // HTTP/1.1 default true, 1.0 default false; "Connection: close"/"keep-alive" (case-insensitive, whole value) override
}

// ErrDrop means the connection must be closed without any response: bad or
// missing version, empty target, leading empty line, EOF in the middle of the
// request head, and so on. KT's HTTPServer simply returns false in these
// cases, which makes the worker close the socket silently.
var ErrDrop = errors.New("ktproto: malformed request, drop connection")

// StatusError asks the server to answer with a KT transport error response
// and then close the connection. KT uses Code 400 with Reason "receiving data
// failed" or "invalid chunk", and Code 413 with "request entity too large".
type StatusError struct {
	Code   int
	Reason string
}

// Error implements error.
func (e *StatusError) Error() string {
	return "ktproto: " + strconv.Itoa(e.Code) + " " + e.Reason
}

// Body returns the text/plain body KT sends with a transport error:
// "<code> <phrase> (<reason>)\n".
func (e *StatusError) Body() []byte {
	b := strconv.AppendInt(nil, int64(e.Code), 10)
	b = append(b, ' ')
	b = append(b, StatusText(e.Code)...)
	b = append(b, " ("...)
	b = append(b, e.Reason...)
	return append(b, ")\n"...)
}

// Response builds the complete response KT's send_error writes for e:
// Connection: close, Content-Type: text/plain and the Body text.
func (e *StatusError) Response(server string, date time.Time) *Response {
	return &Response{
		Code:    e.Code,
		Server:  server,
		Date:    date,
		Close:   true,
		Headers: []Header{{Name: "Content-Type", Value: "text/plain"}},
		Body:    e.Body(),
	}
}

var (
	errRecvFailed   = &StatusError{Code: 400, Reason: "receiving data failed"}
	errInvalidChunk = &StatusError{Code: 400, Reason: "invalid chunk"}
	errTooLarge     = &StatusError{Code: 413, Reason: "request entity too large"}
)

// lineReader reads lines exactly like KT's Socket::receive_line: every '\r'
// is dropped, '\n' ends the line, and at most maxLine other bytes are kept.
// When the limit is hit the line ends there and the rest of the physical line
// (including its '\n') is left for the next call, as in KT.
type lineReader struct {
	br  *bufio.Reader
	buf []byte // scratch for lines that span buffer refills or contain '\r'
}

// readLine returns the next line. The slice is only valid until the next
// call. A line is cut at its first NUL because KT treats it as a C string.
// err is io.EOF if nothing at all could be read, io.ErrUnexpectedEOF if the
// stream ended inside the line.
func (lr *lineReader) readLine() ([]byte, error) {
	br := lr.br
	// Fast path: the whole line is in the buffer and holds no '\r' except a
	// final one; return it without copying.
	if n := br.Buffered(); n > 0 {
		peek, _ := br.Peek(n)
		if i := indexByte(peek, '\n'); i >= 0 {
			line := peek[:i]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			// KT stops after maxLine kept bytes without consuming the
			// '\n', so only shorter lines may take this path.
			if len(line) < maxLine && indexByte(line, '\r') < 0 {
				br.Discard(i + 1)
				return cutNUL(line), nil
			}
		}
	}
	// Slow path: byte-wise like KT.
	out := lr.buf[:0]
	started := false
	for len(out) < maxLine {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				lr.buf = out
				if !started && errors.Is(err, io.EOF) {
					return nil, io.EOF
				}
				if errors.Is(err, io.EOF) {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
		started = true
		peek, _ := br.Peek(br.Buffered())
		consumed := 0
		done := false
		for _, c := range peek {
			if len(out) >= maxLine {
				break
			}
			consumed++
			if c == '\n' {
				done = true
				break
			}
			if c != '\r' {
				out = append(out, c)
			}
		}
		br.Discard(consumed)
		if done {
			break
		}
	}
	lr.buf = out
	return cutNUL(out), nil
}

func cutNUL(b []byte) []byte {
	if i := indexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// ReadRequest reads exactly one request (request line, headers, body per KT
// rules: Content-Length via KC atoi (negative = absent) wins over
// Transfer-Encoding: chunked; chunked: hex sizes, extensions ignored, CRLF
// after each chunk required ("invalid chunk" otherwise), 0-size chunk or
// empty size line ends it, no trailers; else empty body). All '\r' bytes in
// header lines are dropped; bare LF works. Body > maxBody -> *StatusError 413
// (without reading the body). io.EOF if the reader is at EOF before any byte
// of the request.
//
// Lines longer than 8191 bytes are split like KT does (the rest is read as
// the next line); for a request line this always leaves it without a valid
// version, so the request is dropped.
func ReadRequest(br *bufio.Reader, maxBody int64) (*Request, error) {
	return readRequest(br, maxBody, DefaultMaxHeader, nil, nil, nil)
}

// A RequestReader reads one connection's requests into storage it reuses: each
// Read returns a Request that stays valid only until the next Read. Strings equal
// to the previous request's (the target, most header values: clients repeat
// them) are shared with it instead of allocated again. A body is never reused:
// what is parsed from it may share its bytes (ParseInputInto). The zero value
// is ready.
type RequestReader struct {
	reqs [2]Request
	next int
}

// maxKeptHeaders bounds the header map a RequestReader keeps for the next request.
const maxKeptHeaders = 32

// Read is ReadRequest under lim (nil: KT's bounds), into the reader's storage.
// A body over lim.MaxBody is refused with KT's 413 before any of it is read; a
// head over lim.MaxHeader with 413 "request header too large"; an error from
// lim.Reserve is returned as is.
func (rr *RequestReader) Read(br *bufio.Reader, lim *Limits) (*Request, error) {
	req, prev := &rr.reqs[rr.next], &rr.reqs[1-rr.next]
	h := req.Header
	if len(h) > maxKeptHeaders {
		h = nil
	} else {
		clear(h)
	}
	*req = Request{Header: h}
	got, err := readRequest(br, lim.maxBody(), lim.maxHeader(), lim.reserveFunc(), req, prev)
	if err != nil {
		return nil, err
	}
	rr.next = 1 - rr.next
	return got, nil
}

// readRequest reads one request into req (nil: a new one), sharing strings with
// prev (nil: none) where they are equal.
func readRequest(br *bufio.Reader, maxBody, maxHeader int64, reserve func(int64) error, req, prev *Request) (*Request, error) {
	lr := lineReader{br: br}
	line, err := lr.readLine()
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, dropErr(err)
	}
	// "METHOD SP TARGET SP VERSION": KT splits at the first and the second
	// space; everything after the second space must be the exact version.
	sp1 := indexByte(line, ' ')
	if sp1 < 0 {
		return nil, ErrDrop
	}
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 < 0 {
		return nil, ErrDrop
	}
	target := rest[:sp2]
	version := rest[sp2+1:]
	var minor int
	switch string(version) {
	case "HTTP/1.0":
		minor = 0
	case "HTTP/1.1":
		minor = 1
	default:
		return nil, ErrDrop
	}
	path := target
	hasQuery := false
	if q := indexByte(target, '?'); q >= 0 {
		path, hasQuery = target[:q], true
	}
	if len(path) == 0 {
		// KT checks the path after cutting the query, so "GET ?a HTTP/1.1"
		// is dropped as well.
		return nil, ErrDrop
	}
	if req == nil {
		req = &Request{}
	}
	req.Method = internMethod(line[:sp1])
	req.Minor = minor
	req.KeepAlive = minor >= 1
	if prev != nil && prev.Target == string(target) {
		req.Target = prev.Target
	} else {
		req.Target = string(target)
	}
	req.Path = req.Target[:len(path)]
	if hasQuery {
		req.Query = req.Target[len(path)+1:]
	}

	clen := int64(-1)
	chunked := false
	headBytes := int64(0)
	for {
		line, err := lr.readLine()
		if err != nil {
			return nil, dropErr(err)
		}
		if len(line) == 0 {
			break
		}
		// Header lines are kept in a map: bound their total so that a
		// client cannot grow it without limit within one -tout.
		if headBytes += int64(len(line)) + 1; headBytes > maxHeader {
			return nil, errHeaderTooLarge
		}
		colon := indexByte(line, ':')
		if colon < 0 {
			continue // KT ignores lines without ':'
		}
		name := normHeaderName(line[:colon])
		if name == "" {
			continue
		}
		v := line[colon+1:]
		for len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
		// KT evaluates these while reading, so with duplicates the effect
		// of every occurrence counts (e.g. "Connection: close" followed by
		// "Connection: foo" still closes).
		switch name {
		case "connection":
			if equalFoldASCII(v, "close") {
				req.KeepAlive = false
			} else if equalFoldASCII(v, "keep-alive") {
				req.KeepAlive = true
			}
		case "content-length":
			clen = atoiBytes(v)
		case "transfer-encoding":
			if equalFoldASCII(v, "chunked") {
				chunked = true
			}
		}
		if req.Header == nil {
			req.Header = make(map[string]string, 4)
		}
		if pv, ok := prev.header(name); ok && pv == string(v) {
			req.Header[name] = pv
		} else {
			req.Header[name] = string(v)
		}
	}
	if req.Header == nil {
		req.Header = map[string]string{}
	}

	switch req.Method {
	case "GET", "HEAD", "DELETE":
		return req, nil
	}
	if clen >= 0 {
		if clen > maxBody {
			return nil, errTooLarge
		}
		body, err := appendFull(nil, br, clen, reserve)
		if err != nil {
			return nil, recvErr(err)
		}
		req.Body = body
		return req, nil
	}
	if chunked {
		body, err := readChunked(&lr, maxBody, reserve)
		if err != nil {
			return nil, err
		}
		req.Body = body
	}
	return req, nil
}

// header returns the value of the header name, if r is not nil and has it.
func (r *Request) header(name string) (string, bool) {
	if r == nil {
		return "", false
	}
	v, ok := r.Header[name]
	return v, ok
}

// recvErr maps a failure while reading a body to KT's 400 "receiving data
// failed", except a refusal from the reserve hook (a *StatusError), which
// is passed through.
func recvErr(err error) error {
	var se *StatusError
	if errors.As(err, &se) {
		return se
	}
	return errRecvFailed
}

// dropErr maps a failure while reading the request head to ErrDrop; other
// I/O errors (timeouts, resets) are passed through so the caller can log
// them. Either way the connection is closed without a response, as in KT.
func dropErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrDrop
	}
	return err
}

// internMethod avoids an allocation for the common methods.
func internMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	}
	return string(b)
}

// normHeaderName applies KC strnrmspc (runs of whitespace and DEL become one
// space, both ends trimmed) and strtolower, returning common names without
// allocating.
func normHeaderName(b []byte) string {
	simple := len(b) > 0
	for _, c := range b {
		if c <= ' ' || c == 0x7f || ('A' <= c && c <= 'Z') {
			simple = false
			break
		}
	}
	if simple {
		return internHeader(b)
	}
	out := make([]byte, 0, len(b))
	spc := true
	for _, c := range b {
		if (c > 0 && c <= ' ') || c == 0x7f {
			if !spc {
				out = append(out, ' ')
			}
			spc = true
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
		spc = false
	}
	for len(out) > 0 && out[len(out)-1] == ' ' {
		out = out[:len(out)-1]
	}
	return internHeader(out)
}

func internHeader(b []byte) string {
	switch string(b) {
	case "host":
		return "host"
	case "content-length":
		return "content-length"
	case "content-type":
		return "content-type"
	case "connection":
		return "connection"
	case "transfer-encoding":
		return "transfer-encoding"
	case "user-agent":
		return "user-agent"
	case "accept":
		return "accept"
	case "x-kt-xt":
		return "x-kt-xt"
	case "x-kt-mode":
		return "x-kt-mode"
	}
	return string(b)
}

// equalFoldASCII is KC stricmp(a, b) == 0 for ASCII letters.
func equalFoldASCII(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// bodyStep is the largest buffer allocated ahead of the bytes that fill it;
// bigger bodies grow as data arrives so that a lying Content-Length cannot
// make us allocate 256 MiB up front.
const bodyStep = 1 << 20

// readChunked follows KT's loop: size line (empty line ends the body; size
// via atoih, so extensions after ';' are ignored), data, then exactly "\r\n";
// a chunk of size < 1 ends the body after its CRLF. Trailers are not read.
func readChunked(lr *lineReader, maxBody int64, reserve func(int64) error) ([]byte, error) {
	var body []byte
	for {
		line, err := lr.readLine()
		if err != nil {
			return nil, errRecvFailed
		}
		if len(line) == 0 {
			break
		}
		csiz := atoihBytes(line)
		// KT computes bsiz + csiz, which can overflow for absurd sizes;
		// the subtraction form cannot.
		if csiz > maxBody-int64(len(body)) {
			return nil, errTooLarge
		}
		if csiz > 0 {
			body, err = appendFull(body, lr.br, csiz, reserve)
			if err != nil {
				return nil, recvErr(err)
			}
		}
		c1, err1 := lr.br.ReadByte()
		if err1 != nil || c1 != '\r' {
			return nil, errInvalidChunk
		}
		c2, err2 := lr.br.ReadByte()
		if err2 != nil || c2 != '\n' {
			return nil, errInvalidChunk
		}
		if csiz < 1 {
			break
		}
	}
	if body == nil {
		body = []byte{}
	}
	return body, nil
}

// StatusText returns KT's reason phrase for code (kthttp.h status_name),
// with KT's "Unknown ... Status" fallbacks for codes it does not know.
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 102:
		return "Processing"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 203:
		return "Non-Authoritative Information"
	case 204:
		return "No Content"
	case 205:
		return "Reset Content"
	case 206:
		return "Partial Content"
	case 207:
		return "Multi-Status"
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 305:
		return "Use Proxy"
	case 307:
		return "Temporary Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 411:
		return "Length Required"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Request Entity Too Large"
	case 414:
		return "Request-URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Requested Range Not Satisfiable"
	case 417:
		return "Expectation Failed"
	case 422:
		return "Unprocessable Entity"
	case 423:
		return "Locked"
	case 424:
		return "Failed Dependency"
	case 426:
		return "Upgrade Required"
	case 450:
		return "Logical Inconsistency"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	case 506:
		return "Variant Also Negotiates"
	case 507:
		return "Insufficient Storage"
	case 509:
		return "Bandwidth Limit Exceeded"
	case 510:
		return "Not Extended"
	}
	switch {
	case code < 100:
		return "Unknown Status"
	case code < 200:
		return "Unknown Informational Status"
	case code < 300:
		return "Unknown Success Status"
	case code < 400:
		return "Unknown Redirection Status"
	case code < 500:
		return "Unknown Client Error Status"
	case code < 600:
		return "Unknown Server Error Status"
	}
	return "Unknown Status"
}

// Response is one HTTP response as KT writes it.
type Response struct {
	Code    int
	Server  string    // value of the Server header, e.g. "KyotoTycoon/0.9.56"
	Date    time.Time // rendered RFC 1123 GMT "Mon, 02 Jan 2006 15:04:05 GMT"
	Close   bool      // adds "Connection: close"
	Headers []Header  // handler headers; AppendResponse sorts them by lower-case name and re-capitalises names (Content-Type, Location, X-Kt-Error, X-Kt-Xt)
	Body    []byte
	Head    bool // HEAD request: no body bytes; Content-Length line only if ContentLength >= 0 (see below)
	// ContentLength, when >= 0 on a HEAD response, is written as
	// Content-Length (REST HEAD writes the value size, or 0 on misses). For
	// HEAD on RPC paths KT writes no Content-Length: set it to -1. For
	// non-HEAD responses Content-Length is always len(Body) and this field
	// is ignored.
	ContentLength int64
}

// Header is one handler-supplied response header.
type Header struct{ Name, Value string }

// AppendResponse appends the exact bytes of r to dst: status line
// "HTTP/1.1 <code> <phrase>", Server, Date, Connection: close (if Close),
// Content-Length, sorted handler headers, blank line, body.
//
// Like KT's send_result, handler header names are space-normalised and
// lower-cased before sorting, names that end up empty or contain ':' or ' '
// are skipped, values are space-normalised, and for duplicate names (after
// lower-casing) the last one wins. A 304 response is treated like HEAD, as
// in KT. On HEAD the Content-Length line, when present, is sorted among the
// handler headers because KT's REST handler sets it as one.
func AppendResponse(dst []byte, r *Response) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(r.Code), 10)
	dst = append(dst, ' ')
	dst = append(dst, StatusText(r.Code)...)
	dst = append(dst, "\r\nServer: "...)
	dst = append(dst, r.Server...)
	dst = append(dst, "\r\nDate: "...)
	dst = AppendHTTPDate(dst, r.Date)
	dst = append(dst, "\r\n"...)
	if r.Close {
		dst = append(dst, "Connection: close\r\n"...)
	}
	body := !r.Head && r.Code != 304
	if body {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(r.Body)), 10)
		dst = append(dst, "\r\n"...)
	}

	hs := r.Headers
	if !body && r.ContentLength >= 0 {
		cl := Header{Name: "content-length", Value: strconv.FormatInt(r.ContentLength, 10)}
		hs = append(hs[:len(hs):len(hs)], cl)
	}
	dst = appendSortedHeaders(dst, hs)
	dst = append(dst, "\r\n"...)
	if body {
		dst = append(dst, r.Body...)
	}
	return dst
}

// appendSortedHeaders writes hs ordered by normalised lower-case name.
func appendSortedHeaders(dst []byte, hs []Header) []byte {
	switch len(hs) {
	case 0:
		return dst
	case 1:
		return appendHeader(dst, hs[0])
	}
	var stack [8]string
	var keys []string
	if len(hs) <= len(stack) {
		keys = stack[:len(hs)]
	} else {
		keys = make([]string, len(hs))
	}
	var istack [8]int
	var idx []int
	if len(hs) <= len(istack) {
		idx = istack[:len(hs)]
	} else {
		idx = make([]int, len(hs))
	}
	for i := range hs {
		keys[i] = normHeaderKey(hs[i].Name)
		idx[i] = i
	}
	// Insertion sort: stable, allocation-free, and handlers set few headers.
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && keys[idx[j]] < keys[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	for k, i := range idx {
		// KT keeps handler headers in a std::map: for equal names only the
		// last one set survives.
		if k+1 < len(idx) && keys[idx[k+1]] == keys[i] {
			continue
		}
		dst = appendHeader(dst, hs[i])
	}
	return dst
}

// normHeaderKey is strnrmspc + strtolower on a header name (cut at NUL).
func normHeaderKey(name string) string {
	if i := indexByteString(name, 0); i >= 0 {
		name = name[:i]
	}
	clean := len(name) > 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c == 0x7f || ('A' <= c && c <= 'Z') {
			clean = false
			break
		}
	}
	if clean {
		return name
	}
	return string(normSpace(nil, name, true))
}

// normSpace appends KC strnrmspc(s) (optionally lower-cased) to dst.
func normSpace(dst []byte, s string, lower bool) []byte {
	start := len(dst)
	spc := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 {
			break
		}
		if c <= ' ' || c == 0x7f {
			if !spc {
				dst = append(dst, ' ')
			}
			spc = true
			continue
		}
		if lower && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		spc = false
	}
	for len(dst) > start && dst[len(dst)-1] == ' ' {
		dst = dst[:len(dst)-1]
	}
	return dst
}

func appendHeader(dst []byte, h Header) []byte {
	start := len(dst)
	dst = normSpace(dst, h.Name, true)
	name := dst[start:]
	if len(name) == 0 || indexByte(name, ':') >= 0 || indexByte(name, ' ') >= 0 {
		return dst[:start]
	}
	// strcapitalize: upper-case the first letter and every letter after '-'.
	head := true
	for i, c := range name {
		if head && 'a' <= c && c <= 'z' {
			name[i] = c - ('a' - 'A')
		}
		head = c == '-' || c == ' '
	}
	dst = append(dst, ": "...)
	dst = normSpace(dst, h.Value, false)
	return append(dst, "\r\n"...)
}

const (
	dayNames   = "SunMonTueWedThuFriSat"
	monthNames = "JanFebMarAprMayJunJulAugSepOctNovDec"
)

// AppendHTTPDate appends an RFC 1123 GMT date ("Sun, 06 Nov 1994 08:49:37 GMT").
func AppendHTTPDate(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	wd := int(t.Weekday())
	dst = append(dst, dayNames[wd*3:wd*3+3]...)
	dst = append(dst, ", "...)
	dst = append2(dst, day)
	dst = append(dst, ' ')
	m := int(month) - 1
	dst = append(dst, monthNames[m*3:m*3+3]...)
	dst = append(dst, ' ')
	if year >= 0 && year <= 9999 {
		dst = append(dst, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10))
	} else {
		dst = strconv.AppendInt(dst, int64(year), 10)
	}
	dst = append(dst, ' ')
	dst = append2(dst, hour)
	dst = append(dst, ':')
	dst = append2(dst, min)
	dst = append(dst, ':')
	dst = append2(dst, sec)
	return append(dst, " GMT"...)
}

func append2(dst []byte, v int) []byte {
	return append(dst, byte('0'+v/10), byte('0'+v%10))
}
