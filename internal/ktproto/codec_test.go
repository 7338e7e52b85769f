package ktproto

import (
	"maps"
	"math"
	"testing"
	"time"
)

func TestURLDecode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", "abc"},
		{"a+b%20c", "a b c"},
		{"%41%62", "Ab"},
		{"%3d%3D", "=="},
		{"%zzb", "\x00b"},
		{"%4z", "\x04"},
		{"%z4", "\x04"},
		{"d%", "d"},
		{"d%4", "d"},
		{"a b\tc\x7fd", "abcd"},
		{"\xe6\x9d\xb1\xe4\xba\xacx", "x"}, // raw UTF-8 is dropped (signed char)
		{"%E6%9D%B1", "\xe6\x9d\xb1"},
		{"ab\x00cd", "ab"},
		{"%00", "\x00"},
		{"", ""},
	} {
		if got := URLDecode(tc.in); got != tc.want {
			t.Errorf("URLDecode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendURLEncode(t *testing.T) {
	got := string(AppendURLEncode(nil, "x!y*z'(q)~_-.a\tb\n\x00\xff Z9"))
	want := "x%21y%2az%27%28q%29~_-.a%09b%0a%00%ff%20Z9"
	if got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if n := urlEncodedLen("x!y\xff"); n != len(AppendURLEncode(nil, "x!y\xff")) {
		t.Errorf("urlEncodedLen %d", n)
	}
}

func TestBase64(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"f", "Zg=="},
		{"fo", "Zm8="},
		{"foo", "Zm9v"},
		{"value", "dmFsdWU="},
		{"\x00\x00\x00\x00\x00\x00\x00\x05", "AAAAAAAAAAU="},
	} {
		if got := string(AppendBase64(nil, tc.in)); got != tc.want {
			t.Errorf("AppendBase64(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := Base64Decode(tc.want); got != tc.in {
			t.Errorf("Base64Decode(%q) = %q, want %q", tc.want, got, tc.in)
		}
		if base64Len(len(tc.in)) != len(tc.want) {
			t.Errorf("base64Len(%d)", len(tc.in))
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"Zm9v\nYmFy", "foobar"},   // non-alphabet bytes skipped
		{"Zg==Zm9v", "f"},          // stops after the first group with '='
		{"Zm9vYg", "foo\x00\x06 "}, // short last group still yields 3 bytes, as in KC
		{"Z===", ""},               // three '=' produce nothing
		{"Zm\x009v", "\x00\x06f"},  // NUL ends the input
		{"a2V5", "key"},
		{"dGFiCWhlcmU=", "tab\there"},
	} {
		if got := Base64Decode(tc.in); got != tc.want {
			t.Errorf("Base64Decode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestQuotedPrintableDecode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"k=31", "k1"},
		{"v=09x=3Dy", "v\tx=y"},
		{"a=\r\nb", "ab"},
		{"a=\nb", "ab"},
		{"a=\rb", "ab"},
		{"a\tb\xffc", "abc"},
		{"a=", "a"},
		{"a=4", "a"},
		{"a=zz", "a\x00"},
		{"a\x00=41", "a"},
	} {
		if got := QuotedPrintableDecode(tc.in); got != tc.want {
			t.Errorf("QuotedPrintableDecode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAtoi(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"12", 12}, {" 12abc", 12}, {"x", 0}, {"", 0}, {"-5", -5}, {"+7", 7}, {"\t\n 3", 3},
		{"- 3", 0}, {"\xa03", 0}, {"9223372036854775807", math.MaxInt64},
		{"9223372036854775808", math.MinInt64}, // wraps like the C code
		{"1\x002", 1},
	} {
		if got := Atoi(tc.in); got != tc.want {
			t.Errorf("Atoi(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestAtoix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"12", 12}, {"1k", 1024}, {"1.5K", 1536}, {"2 m", 2 << 20}, {"1g", 1 << 30}, {"1t", 1 << 40},
		{"1p", 1 << 50}, {"1e", 1 << 60}, {"8e", math.MaxInt64}, {"-8e", math.MinInt64}, {"-1k", -1024},
		{"0.1k", 102}, {"abc", 0}, {"99999999999999999999999", math.MaxInt64}, {"9223372036854775807", math.MaxInt64},
	} {
		if got := Atoix(tc.in); got != tc.want {
			t.Errorf("Atoix(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestAtof(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{
		{"1.5", 1.5}, {"-0.7", -0.7}, {" 0.5abc", 0.5}, {"x", 0}, {"", 0}, {"3", 3}, {"1e3", 1000},
		{"1.5E-1", 0.15}, {"2e", 2}, {"2e x", 2}, {"2e 2", 200}, {".5", 0.5}, {"-.5", -0.5},
		{"0.1", 0.1}, {"123.456", 123.456},
		{"1.23456789012345678e2", 1.234567890123456}, // 16 significant digits, then the exponent is not seen
		{"12345678901234567.9", 12345678901234567},
		{"1e400", math.Inf(1)}, {"-1e400", math.Inf(-1)}, {"1e-400", 0},
		{"inf", math.Inf(1)}, {"-INFINITY", math.Inf(-1)},
	} {
		if got := Atof(tc.in); got != tc.want {
			t.Errorf("Atof(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if v := Atof("NaN"); !math.IsNaN(v) {
		t.Errorf("Atof(NaN) = %v", v)
	}
	if v := Atof("-0"); v != 0 || !math.Signbit(v) {
		t.Errorf("Atof(-0) = %v", v)
	}
}

func TestParseKTTime(t *testing.T) {
	d := func(y int, mo time.Month, day, h, mi, s int) int64 {
		return time.Date(y, mo, day, h, mi, s, 0, time.UTC).Unix()
	}
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"7258118400", 7258118400, true},
		{"  42 ", 42, true},
		{"0x10", 16, true},
		{"60s", 60, true},
		{"2m", 120, true},
		{"3 h", 3 * 3600, true},
		{"1d", 86400, true},
		{"1day", 0, false},
		{"tomorrow", 0, false},
		{"", 0, false},
		{"   ", 0, false},
		{"-5", 0, false},
		{"2100-01-01T09:00:00+09:00", 4102444800, true},
		{"2100-01-01T00:00:00Z", 4102444800, true},
		{"2100-01-01T00:00:00.123-01:30", 4102444800 + 5400, true},
		{"2100-01-01", 4102444800, true},
		{"2100-01-01T12", d(2100, 1, 1, 12, 0, 0), true},
		{"2100/01/01 10:20:30", d(2100, 1, 1, 10, 20, 30), true},
		{"2100-13-01", d(2101, 1, 1, 0, 0, 0), true}, // normalised like timegm
		{"Fri, 01 Jan 2100 00:00:00 GMT", 4102444800, true},
		{"01 Jan 2100 00:00:00 GMT", 4102444800, true},
		{"Sun, 06 Nov 1994 08:49:37 +0100", 784111777 - 3600, true},
		{"Sun, 06 Nov 1994 08:49:37 -0130", 784111777 + 5400, true},
		{"Sun, 06 Nov 1994 08:49:37 JST", 784111777 - 9*3600, true},
		{"Sun, 06 Nov 1994 08:49:37 PST", 784111777 + 8*3600, true},
		{"Sun, 06 Nov 94 08:49:37 GMT", 784111777, true},
		{"6 nov 1994", d(1994, 11, 6, 0, 0, 0), true},
		{"Sunday, 06-Nov-94 08:49:37 GMT", 0, false},
		{"Sun, 00 Nov 1994", 0, false},
	} {
		got, ok := ParseKTTime(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseKTTime(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestColEncOf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want byte
	}{
		{"text/tab-separated-values", 0},
		{"text/tab-separated-values; colenc=B", 'B'},
		{"TEXT/Tab-Separated-Values; COLENC=base64", 'B'},
		{"text/tab-separated-values;colenc=\"u\"", 'U'},
		{"text/tab-separated-values; colenc=Q", 'Q'},
		{"text/tab-separated-values; charset=x; colenc=U", 'U'},
		{"text/tab-separated-values; colenc=U colenc=x", 'U'},
		{"text/tab-separated-values; colenc=U; colenc=B", 'B'},
		{"text/tab-separated-values; xcolenc=B", 0},
		{"text/tab-separated-values; colenc =B", 0},
		{"text/plain; colenc=B", 0},
		{"", 0},
	} {
		if got := ColEncOf(tc.in); got != tc.want {
			t.Errorf("ColEncOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseForm(t *testing.T) {
	m := map[string]string{}
	ParseForm([]byte("b=2;a=1&flag&c=%3D%26& \t d=x=y&&=v;;e=%zz\x00f=1"), m)
	want := map[string]string{"a": "1", "b": "2", "c": "=&", "flag": "", "d": "x=y", "": "v", "e": "\x00"}
	if !maps.Equal(m, want) {
		t.Errorf("got %q want %q", m, want)
	}
}

func TestParseTSV(t *testing.T) {
	m := map[string]string{"old": "1"}
	ParseTSV([]byte("a\t1\r\nb\t2\t3\nnotab\n\nSIGNALBROAD\t\na\tlast\r"), 0, m)
	want := map[string]string{"old": "1", "a": "last", "b": "2\t3", "SIGNALBROAD": ""}
	if !maps.Equal(m, want) {
		t.Errorf("got %q want %q", m, want)
	}
	m = map[string]string{}
	// "a2V5 " and "a2V5" both decode to "key" (the space is skipped); the
	// raw name sorting last wins, as in KT's tsvmapdecode, not the later line.
	ParseTSV([]byte("a2V5 \tdjI=\na2V5\tdjE=\n"), 'B', m)
	if !maps.Equal(m, map[string]string{"key": "v2"}) {
		t.Errorf("colenc collision: %q", m)
	}
	m = map[string]string{}
	ParseTSV([]byte("k%31\tv%09x\nsp\ta+b%20c\n"), 'U', m)
	if !maps.Equal(m, map[string]string{"k1": "v\tx", "sp": "a b c"}) {
		t.Errorf("colenc U: %q", m)
	}
}

func TestParseInput(t *testing.T) {
	in := ParseInput("a=query&b=query", "text/tab-separated-values", []byte("b\tbody\nc\tbody\n"))
	if !maps.Equal(in, map[string]string{"a": "query", "b": "body", "c": "body"}) {
		t.Errorf("tsv merge: %q", in)
	}
	in = ParseInput("q=1", "text/plain", []byte("a=1"))
	if !maps.Equal(in, map[string]string{"q": "1"}) {
		t.Errorf("other ctype: %q", in)
	}
	in = ParseInput("", "Application/X-WWW-Form-Urlencoded; charset=UTF-8", []byte("x=1\x00y=2"))
	if !maps.Equal(in, map[string]string{"x": "1"}) {
		t.Errorf("form: %q", in)
	}
	// With a colenc KT decodes the whole map, query parameters included.
	in = ParseInput("dg%3D%3D=dw%3D%3D", "text/tab-separated-values; colenc=B", []byte("a2V5\tdmFs\n"))
	if !maps.Equal(in, map[string]string{"key": "val", "v": "w"}) {
		t.Errorf("colenc whole map: %q", in)
	}
}

func TestAppendTSV(t *testing.T) {
	for _, tc := range []struct {
		name     string
		kvs      []KV
		body, ct string
	}{
		{"empty", nil, "", ContentTypeTSV},
		{"sorted raw", []KV{{"zeta", "1"}, {"DB", "7"}, {"alpha", "hello world"}}, "DB\t7\nalpha\thello world\nzeta\t1\n", ContentTypeTSV},
		{"dup later wins", []KV{{"k", "first"}, {"a", "x"}, {"k", "second"}}, "a\tx\nk\tsecond\n", ContentTypeTSV},
		{"T6 colenc B", []KV{{"value", "\x00\x00\x00\x00\x00\x00\x00\x05"}}, "dmFsdWU=\tAAAAAAAAAAU=\n", ContentTypeTSVB},
		{"T7 tab", []KV{{"value", "a\tb"}}, "value\ta%09b\n", ContentTypeTSVU},
		{"T7 newline", []KV{{"value", "line1\nline2"}}, "value\tline1%0aline2\n", ContentTypeTSVU},
		{"T7 utf8 raw", []KV{{"value", "東京"}}, "value\t東京\n", ContentTypeTSV},
		{"urlenc choice", []KV{{"v", "\x01!!!!!!!!!!!!!!!!!!!!"}}, "v\t%01" + repeatStr("%21", 20) + "\n", ContentTypeTSVU},
		{"long forces U", []KV{{"v", repeatStr("0123456789", 26)}}, "v\t" + repeatStr("0123456789", 26) + "\n", ContentTypeTSVU},
		// Encoded-name order differs from raw order: raw "~" < "\x7f" but
		// "%7f" < "~".
		{"sort by encoded name", []KV{{"~", "\x01"}, {"\x7f", "1"}}, "%7f\t1\n~\t%01\n", ContentTypeTSVU},
		{"B sort by encoded name", []KV{{"\xff", "\x00\x00\x00\x00\x00\x00"}, {"\x00", "\x00\x00\x00\x00\x00\x00"}},
			"/w==\tAAAAAAAA\nAA==\tAAAAAAAA\n", ContentTypeTSVB},
	} {
		body, ct := AppendTSV([]byte("prefix:"), tc.kvs)
		if string(body) != "prefix:"+tc.body || ct != tc.ct {
			t.Errorf("%s: got %q %q, want %q %q", tc.name, body, ct, tc.body, tc.ct)
		}
	}
}

func repeatStr(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func TestStatusText(t *testing.T) {
	for code, want := range map[int]string{200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
		404: "Not Found", 413: "Request Entity Too Large", 450: "Logical Inconsistency",
		500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
		99: "Unknown Status", 451: "Unknown Client Error Status", 600: "Unknown Status"} {
		if got := StatusText(code); got != want {
			t.Errorf("StatusText(%d) = %q, want %q", code, got, want)
		}
	}
}
