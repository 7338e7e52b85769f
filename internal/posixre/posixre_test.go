package posixre

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The keys of the rpc-match-regex-gnu-* recordings.
var gnuKeys = []string{"a b", "a.b", "a_b", "ab", "dd", "x5", "xd", "xx"}

// gnuCases are the match_regex answers of the real KT (glibc's regcomp(REG_EXTENDED))
// in the recordings rpc-match-regex-gnu-escapes, rpc-match-regex-gnu-edge and
// rpc-match-regex: the keys that matched, or nil for "compilation failed".
var gnuCases = []struct {
	pattern string
	keys    []string // over gnuKeys (or the keys given)
	over    []string
}{
	{`x\d`, []string{"xd"}, nil},
	{`\w`, gnuKeys, nil},
	{`^\w+$`, []string{"a_b", "ab", "dd", "x5", "xd", "xx"}, nil},
	{`a\sb`, []string{"a b"}, nil},
	{`\bab`, []string{"ab"}, nil},
	{`(x)\1`, []string{"xx"}, nil},
	{`\W`, []string{"a b", "a.b"}, nil},
	{`a\.b`, []string{"a.b"}, nil},
	{`[[:digit:]]`, []string{"x5"}, nil},
	{`^x{2}$`, []string{"xx"}, nil},
	{`a\>`, []string{"a b", "a.b"}, nil},
	{`\<a`, []string{"a b", "a.b", "a_b", "ab"}, nil},
	{`\S\s`, []string{"a b"}, nil},
	{`*a`, nil, nil},
	{`a{,1}b`, []string{"a b", "a.b", "a_b", "ab"}, nil},
	{`a|`, gnuKeys, nil},
	{`()`, gnuKeys, nil},
	{`[a-`, nil, nil},
	{`a{2,1}`, nil, nil},
	{`\d\d`, []string{"dd"}, nil},
	{`[\d]`, []string{"dd", "xd"}, nil},
	{`+`, nil, nil},
	{`a**`, gnuKeys, nil},
	{`x{1}{2}`, []string{"xx"}, nil},
	{`^a.*t$|na`, []string{"apricot", "banana"}, []string{"apple", "apricot", "banana", "cherry"}},
	{`(unclosed`, nil, []string{"apple", "apricot", "banana", "cherry"}},
	{`ap`, []string{"apple", "apricot"}, []string{"apple", "apricot"}},
}

func TestMatch_Recordings(t *testing.T) {
	for _, tc := range gnuCases {
		keys := tc.over
		if keys == nil {
			keys = gnuKeys
		}
		re, err := Compile(tc.pattern)
		if tc.keys == nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("Compile(%q) = %v, want a compilation error", tc.pattern, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.pattern, err)
			continue
		}
		var got []string
		for _, k := range keys {
			ok, err := re.MatchString(k)
			if err != nil {
				t.Fatalf("%q on %q: %v", tc.pattern, k, err)
			}
			if ok {
				got = append(got, k)
			}
		}
		if !slices.Equal(got, tc.keys) {
			t.Errorf("%q matches %q, KT matched %q", tc.pattern, got, tc.keys)
		}
		checkEngines(t, re, keys)
	}
}

// Which patterns glibc's regcomp(REG_EXTENDED) refuses, read from posix/regcomp.c.
func TestCompile_Errors(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		code    ErrorCode // 0: compiles
	}{
		{"", 0}, {"a", 0}, {"()", 0}, {"(|)", 0}, {"|", 0}, {"a||b", 0}, {")", 0}, {"a)", 0},
		{"(a))", 0}, {"}", 0}, {"a}", 0}, {`\{`, 0}, {`\}`, 0}, {`\(`, 0}, {`\|`, 0},
		{`\+`, 0}, {`\?`, 0}, {`\0`, 0}, {`\n`, 0}, {"a{,}", 0}, {"a{0}", 0}, {"a{0,0}", 0},
		{"a{32767}", 0}, {"x{1}{2}", 0}, {"a**", 0}, {"a+*?", 0}, {"[]a]", 0}, {"[^]a]", 0},
		{"[a-]", 0}, {"[-a]", 0}, {"[--/]", 0}, {`[\d]`, 0}, {"[[.-.]]", 0}, {"[[=a=]b]", 0},
		{"[[:alpha:]-]", 0}, {"[a-[.z.]]", 0}, {"[[.a.]-z]", 0}, {"[[]", 0}, {"[a[]", 0},
		{"[[:alpha:][:digit:]]", 0}, {"^", 0}, {"$", 0}, {"a^b$c", 0}, {`\b\B\<\>`, 0},
		{"\\`a\\'", 0}, {`(a)\1`, 0}, {`(a)|\1`, 0}, {`((a)\2)\1`, 0}, {"(){0}", 0},
		{"a\x00*", 0}, // the pattern ends at the NUL

		{"*a", ErrBadRepeat}, {"+", ErrBadRepeat}, {"?", ErrBadRepeat}, {"{1}", ErrBadRepeat},
		{"a|*b", ErrBadRepeat}, {"(*a)", ErrBadRepeat}, {"^*", ErrBadRepeat}, {"a$+", ErrBadRepeat},
		{`\b*`, ErrBadRepeat}, {"(?i)a", ErrBadRepeat},
		{"a{", ErrBrace}, {"a{1", ErrBrace}, {"a{1,", ErrBrace}, {"a{1,2", ErrBrace},
		{"a{}", ErrBadBrace}, {"a{x}", ErrBadBrace}, {"a{1,2,3}", ErrBadBrace}, {"a{2,1}", ErrBadBrace},
		{"a{ 1}", ErrBadBrace}, {"a{1x}", ErrBadBrace},
		{"a{32768}", ErrSize}, {"a{1,40000}", ErrSize}, {"a{99999999999}", ErrSize},
		{"(", ErrParen}, {"(a", ErrParen}, {"(unclosed", ErrParen}, {"((a)", ErrParen},
		{`\`, ErrEscape}, {`a\`, ErrEscape},
		{`\1`, ErrBackref}, {`(a)\2`, ErrBackref}, {`(a\1)`, ErrBackref},
		{"[", ErrBadPattern}, {"[^", ErrBadPattern}, {"[a", ErrBracket}, {"[a-", ErrBracket},
		{"[]", ErrBracket}, {"[^]", ErrBracket}, {"[[:alpha:]", ErrBracket}, {"[[:alpha", ErrBracket},
		{"[[.a", ErrBracket}, {"[[:" + strings.Repeat("x", 40) + ":]]", ErrBracket},
		{"[[:foo:]]", ErrClass}, {"[z-a]", ErrRange}, {"[a-c-e]", ErrRange}, {"[[:alpha:]-z]", ErrRange},
		{"[a-[:alpha:]]", ErrRange}, {"[[.ab.]]", ErrCollate}, {"[[=ab=]]", ErrCollate}, {"[[..]]", ErrCollate},
	} {
		_, err := Compile(tc.pattern)
		var e *Error
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("Compile(%q): %v, want success", tc.pattern, err)
		case tc.code != 0 && !errors.As(err, &e):
			t.Errorf("Compile(%q) = %v, want error %d", tc.pattern, err, tc.code)
		case tc.code != 0 && e.Code != tc.code:
			t.Errorf("Compile(%q): %v (code %d), want code %d", tc.pattern, err, e.Code, tc.code)
		}
	}
}

func TestMatch_Semantics(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true}, {"", "x", true},
		{"a^b", "a^b", false}, {`a\^b`, "a^b", true}, {"a$b", "a$b", false}, {"^$", "", true},
		{"^a$", "a\nb", false}, {"a$", "a\n", false}, // no REG_NEWLINE
		{".", "\n", true}, {"^.$", "\xe6", true}, {"^..$", "\xc3\xa9", true}, {"^.$", "\xc3\xa9", false},
		{"[^a]", "\xff", true}, {"\xff", "x\xffy", true}, {"[\x80-\xff]", "a\x90", true}, {"[\x80-\xff]", "abc", false},
		{"b", "a\x00b", false}, // the subject ends at the NUL
		{`\w`, "\xe9", false}, {`\W`, "\xe9", true}, {`\s`, "\v", true}, {`\S`, " \t", false},
		{`\bfoo\b`, "a foo.", true}, {`\bfoo\b`, "afoo", false}, {`\Boo`, "foo", true}, {`\Bfoo`, "foo", false},
		{`\<foo\>`, "(foo)", true}, {`\<oo`, "foo", false}, {`o\>`, "foo", true}, {`f\>`, "foo", false},
		{"\\`a", "ba", false}, {"a\\'", "ab", false}, {"\\`b.\\'", "ba", true},
		{`(a*)\1x`, "aaaax", true}, {`(a*)\1x`, "aaax", true}, {`^(a+)\1$`, "aaa", false}, {`^(a+)\1$`, "aaaa", true},
		{`(a)|b\1`, "b", false}, {`(a)|b\1`, "ba", true}, {`((a)|b)\2`, "ba", false},
		{`(ab|a)(bc|c)\2`, "abcc", true},
		{"[[:upper:]][[:lower:]]", "xAb", true}, {"[[:punct:]]", "a_", true}, {"[[:xdigit:]]+$", "fF09", true},
		{"[[.-.]]", "a-b", true}, {"[[=x=]]", "x", true}, {"[]a]", "]", true}, {"[^]a]", "]a", false},
		{`[\d]`, `\`, true}, {"a{0}b", "b", true}, {"(a){0}b", "ab", true}, {"a{,2}c", "c", true},
		{"x{3,}", "xxx", true}, {"x{3,}", "xx", false}, {"(a|ab)(c|bcd)(d*)", "abcd", true},
		{"a)", "a)", true}, {"}", "}", true}, {`\(`, "(", true}, {`a\{1\}`, "a{1}", true},
	} {
		re, err := Compile(tc.pattern)
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.pattern, err)
			continue
		}
		got, err := re.MatchString(tc.s)
		if err != nil || got != tc.want {
			t.Errorf("%q on %q = %v, %v; want %v", tc.pattern, tc.s, got, err, tc.want)
		}
		checkEngines(t, re, []string{tc.s})
	}
}

// kc::Regex::replace, as kcregex.cc writes it.
func TestReplace(t *testing.T) {
	for _, tc := range []struct {
		pattern, s, alt, want string
	}{
		{"a", "banana", "o", "bonono"},
		{"an", "banana", "[$&]", "b[an][an]a"},
		{"(a)(n)", "banana", "$2$1", "bnanaa"},
		{"(a)(n)", "banana", "$0|$3|$$|$x", "ban||$|xan||$|xa"}, // $3: no such group
		{"n", "banana", "x$", "baxaxa"},
		{"^a", "aaa", "b", "baa"},              // later searches are REG_NOTBOL
		{"\\`a", "aaa", "b", "bbb"},            // \` is not affected by REG_NOTBOL
		{"x*", "abc", "-", "-abc"},             // an empty match at the start ends it
		{"$", "abc", "!", "abc!"},              // an empty match at the end
		{"b*", "abbc", "-", "-abbc"},           // leftmost first: empty at 0
		{"z", "abc\x00def", "y", "abc\x00def"}, // no match: s whole
		{"b", "abc\x00def", "y", "ayc"},        // a match: the C string only
		{"b", "abc", "y\x00z", "ayc"},          // alt ends at its NUL too
		{"", "abc", "y", "abc"},                // an empty pattern: REG_NOSUB
		{"(a)\\1", "xaay", "[$1]", "x[a]y"},
		// Each search sees what remains as a string of its own: "a" after "a a" starts a word.
		{"\\<a", "a aa ba", "X", "X XX ba"},
		{".", "\xc3\xa9", "<$&>", "<\xc3><\xa9>"},
		{"(x)|y", "y", "[$1]", "[]"},
		{"a+", "caaat", "$&$&", "caaaaaat"},
		// Ambiguous submatches: the first way in order of preference (glibc may differ).
		{"(a|ab)(c|bcd)(d*)", "abcd", "$1,$2,$3", "a,bcd,"},
	} {
		re, err := Compile(tc.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.pattern, err)
		}
		got, err := re.Replace(tc.s, tc.alt)
		if err != nil || got != tc.want {
			t.Errorf("Replace(%q, %q, %q) = %q, %v; want %q", tc.s, tc.pattern, tc.alt, got, err, tc.want)
		}
		if bt := backtrackReplace(t, re, tc.s, tc.alt); re.goRE != nil && bt != got {
			t.Errorf("Replace(%q, %q, %q): backtracker %q, Go %q", tc.s, tc.pattern, tc.alt, bt, got)
		}
	}
	if got, err := ReplaceString("abc", "(", "x"); got != "abc" || err == nil {
		t.Errorf("ReplaceString with an invalid pattern = %q, %v", got, err)
	}
	if ok, err := MatchString("abc", "b"); !ok || err != nil {
		t.Errorf("MatchString = %v, %v", ok, err)
	}
}

// A back-reference pattern that would take exponential time fails with ErrBudget.
func TestMatch_Budget(t *testing.T) {
	re := MustCompile(`^(a|aa)*(a|aa)*(a|aa)*\1\2\3b`)
	if re.prog == nil {
		t.Fatal("a back reference must run on the backtracking matcher")
	}
	s := strings.Repeat("a", 200)
	if _, err := re.MatchString(s); !errors.Is(err, ErrBudget) {
		t.Fatalf("Match = %v, want ErrBudget", err)
	}
	if _, err := re.Replace(s, "x"); !errors.Is(err, ErrBudget) {
		t.Fatalf("Replace = %v, want ErrBudget", err)
	}
	// Without back references the same shape is cheap, on either engine.
	for _, p := range []string{`^(a|aa)*(a|aa)*(a|aa)*b`, `\<(a|aa)*(a|aa)*(a|aa)*b`} {
		re := MustCompile(p)
		if ok, err := re.MatchString(s); ok || err != nil {
			t.Fatalf("%s: Match = %v, %v", p, ok, err)
		}
	}
}

// Patterns too large for Go's regexp go to the backtracking matcher; larger ones are
// refused.
func TestCompile_Large(t *testing.T) {
	re := MustCompile("a{2000}")
	if re.goRE != nil {
		t.Fatal("a{2000} cannot run on Go's regexp")
	}
	if ok, _ := re.MatchString(strings.Repeat("a", 2000)); !ok {
		t.Fatal("a{2000} does not match 2000 a")
	}
	if ok, _ := re.MatchString(strings.Repeat("a", 1999)); ok {
		t.Fatal("a{2000} matches 1999 a")
	}
	if _, err := Compile("(a{1000}){1000}"); err == nil {
		t.Fatal("(a{1000}){1000} compiled")
	}
	// Nesting is bounded (the parser and the matchers recurse), alternatives are not.
	for _, p := range []string{strings.Repeat("(", 1001) + strings.Repeat(")", 1001), "a" + strings.Repeat("*", 1001)} {
		var e *Error
		if _, err := Compile(p); !errors.As(err, &e) || e.Code != errCodeTooComplex {
			t.Errorf("%.10s... nested 1001 deep: %v", p, err)
		}
	}
	for _, p := range []string{strings.Repeat("(", 500) + strings.Repeat(")", 500), "a" + strings.Repeat("*", 900), strings.Repeat("a|", 100000) + "b"} {
		re, err := Compile(p)
		if err != nil {
			t.Fatalf("%.10s...: %v", p, err)
		}
		if ok, err := re.MatchString("b"); !ok || err != nil {
			t.Fatalf("%.10s... on b: %v, %v", p, ok, err)
		}
	}
}

// checkEngines compares, for a pattern Go's regexp runs, its answers with the
// backtracking matcher's on each subject, with and without REG_NOTBOL: the same
// leftmost-longest match and submatches, and a first match exactly when there is one.
func checkEngines(t *testing.T, re *Regexp, subjects []string) {
	t.Helper()
	if re.goRE == nil {
		return
	}
	p, err := re.backtracker()
	if err != nil {
		return
	}
	for _, s := range subjects {
		b := []byte(cString(s))
		for _, notbol := range []bool{false, true} {
			steps := DefaultBudget
			want, _ := re.find(b, notbol, &steps)
			steps = DefaultBudget
			got, err := p.search(b, notbol, true, &steps)
			if err != nil {
				continue
			}
			if !slices.Equal(got, want) {
				t.Errorf("%q on %q (notbol %v): backtracker %v, Go %v (as %s)", re.pattern, s, notbol, got, want, goSyntax(re.tree, notbol))
			}
			steps = DefaultBudget
			first, err := p.search(b, notbol, false, &steps)
			if err == nil && (first != nil) != (want != nil) {
				t.Errorf("%q on %q: first match %v, longest %v", re.pattern, s, first, want)
			}
		}
	}
}

// backtrackReplace runs Replace on the backtracking matcher.
func backtrackReplace(t *testing.T, re *Regexp, s, alt string) string {
	t.Helper()
	if re.goRE == nil {
		got, _ := re.Replace(s, alt)
		return got
	}
	p, err := re.backtracker()
	if err != nil {
		t.Fatal(err)
	}
	bt := &Regexp{pattern: re.pattern, tree: re.tree, nsub: re.nsub, nosub: re.nosub, prog: p}
	got, err := bt.Replace(s, alt)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

var _ = regexp.Compile
