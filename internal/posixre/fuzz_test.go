package posixre

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// FuzzRegexp compiles any pattern and matches it against any subject without
// panicking, and cross-checks the engines: where Go's regexp runs a pattern, the
// backtracking matcher must find the same leftmost-longest match and submatches (with
// and without REG_NOTBOL) and Replace must give the same result; and where the pattern
// uses only syntax on which glibc's ERE and Go's POSIX syntax agree, Go's own
// regexp.CompilePOSIX must agree too. Seeded with the cases of the real KT's recordings.
func FuzzRegexp(f *testing.F) {
	for _, tc := range gnuCases {
		keys := tc.over
		if keys == nil {
			keys = gnuKeys
		}
		for _, k := range keys {
			f.Add(tc.pattern, k, "[$&$1]")
		}
	}
	for _, s := range []string{"(a|ab)(c|bcd)(d*)", "^(a+)\\1$", "[[:alpha:]]+\\>", "a{2,3}b?", "(x*)*y", "\\`a|b\\'"} {
		f.Add(s, "abcd aab x\xe9y", "<$0>")
	}
	f.Fuzz(func(t *testing.T, pattern, subject, alt string) {
		if len(pattern) > 200 || len(subject) > 200 {
			return
		}
		re, err := Compile(pattern)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Compile(%q) = %v, not an *Error", pattern, err)
			}
			return
		}
		ok, merr := re.MatchString(subject)
		got, rerr := re.Replace(subject, alt)
		if merr != nil || rerr != nil {
			if re.prog == nil || !re.prog.hasBackref {
				t.Fatalf("%q on %q: %v / %v without back references", pattern, subject, merr, rerr)
			}
			return
		}
		if !ok && got != subject {
			t.Fatalf("%q does not match %q but Replace changed it to %q", pattern, subject, got)
		}
		if re.goRE == nil {
			return
		}
		checkEngines(t, re, []string{subject})
		if bt := backtrackReplace(t, re, subject, alt); bt != got {
			t.Fatalf("Replace(%q, %q, %q): backtracker %q, Go %q", subject, pattern, alt, bt, got)
		}
		compareWithGoPOSIX(t, re, pattern, subject)
	})
}

// compareWithGoPOSIX checks a pattern made only of bytes on which glibc's ERE and Go's
// POSIX syntax mean the same, matched against a subject without newlines (Go's POSIX
// '^' and '$' are line anchors): when Go compiles it too, both find the same
// leftmost-longest match.
func compareWithGoPOSIX(t *testing.T, re *Regexp, pattern, subject string) {
	const common = "abc.*+?|()[]^$-"
	for i := 0; i < len(pattern); i++ {
		if !strings.ContainsRune(common, rune(pattern[i])) {
			return
		}
	}
	for i := 0; i < len(subject); i++ {
		if c := subject[i]; c == '\n' || c >= 0x80 || c == 0 {
			return
		}
	}
	if strings.Contains(pattern, "[.") || strings.Contains(pattern, "[=") {
		return // Go knows no collating symbols or equivalence classes
	}
	g, err := regexp.CompilePOSIX(pattern)
	if err != nil {
		return // a dialect difference in what compiles (e.g. "a**", "^*")
	}
	steps := DefaultBudget
	got, _ := re.find([]byte(subject), false, &steps)
	want := g.FindStringIndex(subject)
	if (got == nil) != (want == nil) || got != nil && (got[0] != want[0] || got[1] != want[1]) {
		t.Fatalf("%q on %q: %v, Go's CompilePOSIX %v", pattern, subject, got, want)
	}
}

// FuzzPOSIXSubset maps its input onto the syntax glibc's ERE and Go's POSIX syntax share
// and checks the two against each other (and the engines against each other), so that
// the fuzzer spends its time where Go's own implementation is the reference.
func FuzzPOSIXSubset(f *testing.F) {
	f.Add([]byte{0, 3, 4}, []byte{0, 1, 0, 2})
	f.Add([]byte{8, 0, 10, 1, 9, 4}, []byte{0, 1, 1, 0})
	f.Add([]byte{11, 0, 14, 1, 12, 5}, []byte{2, 0, 1})
	f.Fuzz(func(t *testing.T, pat, subj []byte) {
		const alphabet = "abc.*+?|()[]^$-"
		if len(pat) > 40 || len(subj) > 40 {
			return
		}
		p := make([]byte, len(pat))
		for i, b := range pat {
			p[i] = alphabet[int(b)%len(alphabet)]
		}
		s := make([]byte, len(subj))
		for i, b := range subj {
			s[i] = "abc"[int(b)%3]
		}
		re, err := Compile(string(p))
		if err != nil {
			return
		}
		compareWithGoPOSIX(t, re, string(p), string(s))
		checkEngines(t, re, []string{string(s)})
	})
}
