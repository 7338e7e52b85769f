package ktproto

import (
	"bytes"
	"slices"
	"strings"
	"unsafe"
)

// The only three Content-Type values KT puts on TSV-RPC responses. Clients
// compare them literally (lua-resty-kyototycoon) or look at the last byte
// (cloudflare/golibs), so nothing may be added.
const (
	ContentTypeTSV  = "text/tab-separated-values"
	ContentTypeTSVB = "text/tab-separated-values; colenc=B"
	ContentTypeTSVU = "text/tab-separated-values; colenc=U"
	// ContentTypeForm is the media type of form-encoded RPC input.
	ContentTypeForm = "application/x-www-form-urlencoded"
)

// KV is one name/value pair of an RPC input or output map.
type KV struct{ Key, Value string }

// ParseForm parses application/x-www-form-urlencoded data (pairs split on
// '&' or ';', leading whitespace of each pair trimmed, empty pairs skipped,
// split at first '=', both sides URLDecode'd) and stores each pair in m
// (later duplicates overwrite). Like KT (which hands the body over as a C
// string) the data ends at the first NUL byte.
func ParseForm(data []byte, m map[string]string) { parseForm(data, m) }

func parseForm[T string | []byte](data T, m map[string]string) {
	if i := indexNUL(data); i >= 0 {
		data = data[:i]
	}
	pv := 0
	for rp := 0; rp <= len(data); rp++ {
		if rp < len(data) && data[rp] != '&' && data[rp] != ';' {
			continue
		}
		for pv < rp && isCSpace(data[pv]) {
			pv++
		}
		if rp > pv {
			pair := data[pv:rp]
			var k, v T
			if eq := indexEq(pair); eq >= 0 {
				k, v = pair[:eq], pair[eq+1:]
			} else {
				k = pair
			}
			m[decodeURL(k)] = decodeURL(v)
		}
		pv = rp + 1
	}
}

func indexNUL[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return i
		}
	}
	return -1
}

func indexEq[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return i
		}
	}
	return -1
}

// decodeURL is URLDecode for an input that holds no NUL; clean strings are
// returned without copying.
func decodeURL[T string | []byte](s T) string {
	for i := 0; i < len(s); i++ {
		if !urlDecodeKeeps(s[i]) {
			return string(appendURLDecode(make([]byte, 0, len(s)), s))
		}
	}
	return string(s)
}

// ColEncOf returns the colenc letter 'B', 'Q' or 'U' (upper-case) from a
// Content-Type value, or 0. As in KT the value must start with
// text/tab-separated-values (any case); the rest is scanned for tokens
// separated by spaces or semicolons, a token "colenc=" (name in any case,
// optional '"' before the value) sets the encoding from the first character
// of its value, and a later valid colenc token overrides an earlier one.
func ColEncOf(contentType string) byte {
	if !hasPrefixFold(contentType, ContentTypeTSV) {
		return 0
	}
	s := cutNULString(contentType[len(ContentTypeTSV):])
	enc := byte(0)
	i := 0
	for i < len(s) {
		for i < len(s) && (s[i] == ' ' || s[i] == ';') {
			i++
		}
		if hasPrefixFold(s[i:], "colenc") && cAt(s, i+6) == '=' {
			i += 7
			if cAt(s, i) == '"' {
				i++
			}
			switch cAt(s, i) {
			case 'b', 'B':
				enc = 'B'
			case 'q', 'Q':
				enc = 'Q'
			case 'u', 'U':
				enc = 'U'
			}
		}
		for i < len(s) && s[i] != ' ' && s[i] != ';' {
			i++
		}
	}
	return enc
}

// ParseTSV parses a TSV body into m (split at '\n', trailing '\r' stripped,
// split at the first TAB, lines without TAB ignored, later duplicates win),
// decoding names and values with colenc ('B' Base64, 'Q' quoted-printable,
// 'U' URL; 0 = raw).
//
// With a colenc, KT first collects the raw lines in a map and then decodes
// the entries in byte order of their raw names, so when two raw names decode
// to the same name, the one whose raw name sorts last wins; this does the
// same. Decoding works on C strings: a field ends at its first NUL.
func ParseTSV(body []byte, colenc byte, m map[string]string) {
	if colenc == 0 {
		parseTSVRaw(body, m, false)
		return
	}
	raw := make(map[string]string)
	parseTSVRaw(body, raw, false)
	decodeMapInto(raw, colenc, m)
}

// parseTSVRaw adds body's "name TAB value" lines to m. With alias, the values
// are not copied: they share body's bytes, which must not change afterwards.
// Common names are never copied.
func parseTSVRaw(body []byte, m map[string]string, alias bool) {
	for len(body) > 0 {
		var line []byte
		if i := indexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if tab := indexByte(line, '\t'); tab >= 0 {
			v := line[tab+1:]
			if alias && len(v) > 0 {
				m[internParam(line[:tab])] = unsafe.String(&v[0], len(v))
			} else {
				m[internParam(line[:tab])] = string(v)
			}
		}
	}
}

// internParam returns name as a string, without allocating for the parameter
// names of the common procedures.
func internParam(name []byte) string {
	switch string(name) {
	case "key":
		return "key"
	case "value":
		return "value"
	case "xt":
		return "xt"
	case "DB":
		return "DB"
	case "num":
		return "num"
	case "orig":
		return "orig"
	case "CUR":
		return "CUR"
	}
	return string(name)
}

// decodeField decodes one TSV field with colenc.
func decodeField(s string, colenc byte) string {
	switch colenc {
	case 'B':
		return Base64Decode(s)
	case 'Q':
		return QuotedPrintableDecode(s)
	case 'U':
		return URLDecode(s)
	}
	return s
}

// decodeMapInto decodes every entry of src in sorted key order into dst
// (KT tsvmapdecode).
func decodeMapInto(src map[string]string, colenc byte, dst map[string]string) {
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst[decodeField(k, colenc)] = decodeField(src[k], colenc)
	}
}

// ParseInput builds the RPC input map exactly as KT does (§2.1): query
// string as form, then by Content-Type (case-insensitive prefix):
// application/x-www-form-urlencoded -> body as form; text/tab-separated-values
// -> TSV with colenc; anything else -> body ignored.
//
// KT applies the colenc decoding to the whole input map after the TSV lines
// were added, so with a colenc the query parameters are decoded a second
// time; this is reproduced.
func ParseInput(query string, contentType string, body []byte) map[string]string {
	return parseInput(make(map[string]string, 8), query, contentType, body, false)
}

// ParseInputInto is ParseInput adding to m, which should be empty, for a caller
// that reuses one map from call to call. It returns the input map: m, or a new
// one when a colenc is decoded. The values of a raw TSV body share its bytes:
// the caller must not modify body afterwards.
func ParseInputInto(m map[string]string, query string, contentType string, body []byte) map[string]string {
	return parseInput(m, query, contentType, body, true)
}

func parseInput(m map[string]string, query string, contentType string, body []byte, alias bool) map[string]string {
	if query != "" {
		parseForm(query, m)
	}
	switch {
	case hasPrefixFold(contentType, ContentTypeForm):
		parseForm(body, m)
	case hasPrefixFold(contentType, ContentTypeTSV):
		parseTSVRaw(body, m, alias)
		if enc := ColEncOf(contentType); enc != 0 {
			raw := m
			m = make(map[string]string, len(raw))
			decodeMapInto(raw, enc, m)
		}
	}
	return m
}

// urlCounted marks the bytes KT's checkmapenc counts as one byte of URL
// encoding. It still lists !*'() although the KC 1.2.79 encoder escapes them
// (rpc-echo-output-urlenc-choice.txtar).
var urlCounted = func() (t [256]bool) {
	t = urlSafe
	for _, c := range "!*'()" {
		t[c] = true
	}
	return t
}()

// checkMapEnc is KT checkmapenc: 0 (raw), 'B' or 'U'.
func checkMapEnc(kvs []KV) byte {
	bin := false
	blen, ulen := 0, 0
	field := func(s string) {
		if len(s) > 255 {
			s = s[:255]
			bin = true
		}
		blen += len(s)*6/4 + 3
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < ' ' || c == 0x7f {
				bin = true
			}
			if urlCounted[c] {
				ulen++
			} else {
				ulen += 3
			}
		}
	}
	for _, kv := range kvs {
		field(kv.Key)
		field(kv.Value)
	}
	if !bin {
		return 0
	}
	if blen < ulen {
		return 'B'
	}
	return 'U'
}

func cmpKVKey(a, b KV) int { return strings.Compare(a.Key, b.Key) }

// dedupKVs sorts kvs by key and keeps the last of equal keys (KT's output
// is a std::map).
func dedupKVs(kvs []KV) []KV {
	if len(kvs) < 2 {
		return kvs
	}
	sorted := true
	for i := 1; i < len(kvs); i++ {
		if kvs[i-1].Key >= kvs[i].Key {
			sorted = false
			break
		}
	}
	if sorted {
		return kvs
	}
	slices.SortStableFunc(kvs, cmpKVKey)
	w := 0
	for i := range kvs {
		if i+1 < len(kvs) && kvs[i+1].Key == kvs[i].Key {
			continue
		}
		kvs[w] = kvs[i]
		w++
	}
	return kvs[:w]
}

// AppendTSV encodes the output pairs the way KT does (§2.3 + recordings):
// choose raw/B/U over all names and values with KT's checkmapenc algorithm,
// encode names and values, sort the lines by the encoded name bytes, and
// write "name\tvalue\n" each. It returns the body and the exact Content-Type
// value: "text/tab-separated-values", "...; colenc=B" or "...; colenc=U".
// Duplicate names in kvs: the later one wins (it is a map in KT). kvs may be
// reordered, and when it holds duplicates its elements are overwritten.
func AppendTSV(dst []byte, kvs []KV) (body []byte, contentType string) {
	kvs = dedupKVs(kvs)
	enc := checkMapEnc(kvs)
	if enc == 0 {
		for _, kv := range kvs {
			dst = append(dst, kv.Key...)
			dst = append(dst, '\t')
			dst = append(dst, kv.Value...)
			dst = append(dst, '\n')
		}
		return dst, ContentTypeTSV
	}
	ct := ContentTypeTSVU
	encode := AppendURLEncode
	if enc == 'B' {
		ct = ContentTypeTSVB
		encode = AppendBase64
	}
	if len(kvs) == 1 {
		dst = encode(dst, kvs[0].Key)
		dst = append(dst, '\t')
		dst = encode(dst, kvs[0].Value)
		return append(dst, '\n'), ct
	}
	// Encode every line into scratch, then emit the lines ordered by
	// encoded name: neither encoding preserves byte order.
	size := 0
	for _, kv := range kvs {
		if enc == 'B' {
			size += base64Len(len(kv.Key)) + base64Len(len(kv.Value)) + 2
		} else {
			size += urlEncodedLen(kv.Key) + urlEncodedLen(kv.Value) + 2
		}
	}
	scratch := make([]byte, 0, size)
	type line struct{ start, nameEnd, end int }
	var stack [8]line
	lines := stack[:0]
	for _, kv := range kvs {
		start := len(scratch)
		scratch = encode(scratch, kv.Key)
		nameEnd := len(scratch)
		scratch = append(scratch, '\t')
		scratch = encode(scratch, kv.Value)
		scratch = append(scratch, '\n')
		lines = append(lines, line{start, nameEnd, len(scratch)})
	}
	slices.SortFunc(lines, func(a, b line) int {
		return bytes.Compare(scratch[a.start:a.nameEnd], scratch[b.start:b.nameEnd])
	})
	for _, l := range lines {
		dst = append(dst, scratch[l.start:l.end]...)
	}
	return dst, ct
}
