// Package posixre implements the regular expressions of Kyoto Tycoon: glibc's POSIX
// extended syntax, as regcomp(REG_EXTENDED) compiles it, with the GNU extensions, in the
// C locale, over bytes. KT uses it for match_regex (kc::Regex::match over each key) and,
// in Lua, for kt.regex and db:match_regex (kc::Regex::match and kc::Regex::replace).
//
// The dialect, as glibc's regcomp.c accepts it:
//
//   - ERE operators: | * + ? {n} {n,} {n,m} {,m} ( ) [ ] . ^ $, anchors anywhere; a
//     repetition with nothing before it ("*a", "a|+b", "(?x)", "^*") is an error, a ')'
//     without '(' is an ordinary byte, "a**" and "x{1}{2}" repeat a repetition.
//   - GNU escapes: \w \W \s \S (word bytes [0-9A-Za-z_], C-locale spaces), \b \B \< \>
//     (word edges), \` \' (start and end of the subject), \1 to \9 (back references to
//     closed groups). A backslash before any other byte makes it ordinary: \d is 'd',
//     \. is '.', \( is '('. A trailing backslash is an error.
//   - Brackets: ranges by byte value, [:class:] for the twelve C-locale classes,
//     [.c.] and [=c=] for single bytes, ']' first and '-' first or last ordinary; a
//     backslash is an ordinary byte inside brackets ([\d] is '\' or 'd').
//   - Matching is an unanchored search; the subject ends at its first NUL byte, as the
//     C string KC passes to regexec; '^' and '$' match only at its start and end
//     (no REG_NEWLINE), '.' matches any byte but NUL. Bytes 0x80-0xFF are ordinary
//     bytes (the C locale): '.' matches one of them, not a UTF-8 sequence.
//
// Patterns Go's regexp can express with the same meaning (all but back references, \<,
// \> and counts over 1000) are translated to it and run in linear time; the rest run on
// a small backtracking matcher whose steps are bounded (DefaultBudget): a pattern with
// back references that would take longer fails with ErrBudget instead of stalling the
// caller. Where a match can be found in several ways, submatches (used by Replace) are
// those of the first way in order of preference among the leftmost-longest matches,
// which is Go's rule; glibc can pick other submatches in such ambiguous cases.
package posixre

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
)

// Regexp is a compiled pattern. It is safe for concurrent use.
type Regexp struct {
	pattern string
	tree    *node
	nsub    int
	// nosub: KC compiles an empty pattern with REG_NOSUB, so Replace gives its input back.
	nosub bool

	goRE     *regexp.Regexp // nil: the backtracking matcher runs the pattern
	goNotBOL *regexp.Regexp // goRE with '^' never matching (REG_NOTBOL); nil if no '^'
	prog     *prog          // the backtracking program, when goRE is nil

	btOnce sync.Once // test hook: the backtracking program of a translated pattern
	btProg *prog
	btErr  error
}

// Compile parses pattern as glibc's regcomp(pattern, REG_EXTENDED) does. The pattern
// ends at its first NUL byte, as the C string KC passes. A pattern glibc refuses returns
// an *Error, which KT answers "compilation failed"; so does a pattern too large for the
// backtracking matcher (its intervals expanded to more than 65536 steps) or nested more
// than 1000 deep, which glibc may accept.
func Compile(pattern string) (*Regexp, error) {
	pattern = cString(pattern)
	tree, nsub, err := parse(pattern)
	if err != nil {
		return nil, err
	}
	re := &Regexp{pattern: pattern, tree: tree, nsub: nsub, nosub: pattern == ""}
	if translatable(tree) {
		if g, err := regexp.Compile(goSyntax(tree, false)); err == nil {
			g.Longest()
			re.goRE = g
			if hasLineFirst(tree) {
				n := regexp.MustCompile(goSyntax(tree, true))
				n.Longest()
				re.goNotBOL = n
			} else {
				re.goNotBOL = g
			}
			return re, nil
		}
		// Too large for Go's regexp (nested counts): the backtracking matcher runs it.
	}
	p, err := compileProg(tree, nsub)
	if err != nil {
		return nil, &Error{Code: errCodeTooComplex, Pattern: pattern}
	}
	re.prog = p
	return re, nil
}

// MustCompile is Compile for patterns known to be valid; it panics otherwise.
func MustCompile(pattern string) *Regexp {
	re, err := Compile(pattern)
	if err != nil {
		panic(err)
	}
	return re
}

// String returns the pattern (cut at its first NUL).
func (re *Regexp) String() string { return re.pattern }

// NumSubexp returns the number of parenthesized groups.
func (re *Regexp) NumSubexp() int { return re.nsub }

// Match reports whether b contains a match (kc::Regex::match): b ends at its first NUL
// byte. The error is ErrBudget when the match took more than DefaultBudget steps, which
// only patterns with back references can.
func (re *Regexp) Match(b []byte) (bool, error) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if re.goRE != nil {
		if isASCII(b) {
			return re.goRE.Match(b), nil
		}
		return re.goRE.Match(latin1(b)), nil
	}
	steps := DefaultBudget
	caps, err := re.prog.search(b, false, false, &steps)
	return caps != nil, err
}

// MatchString is Match for a string.
func (re *Regexp) MatchString(s string) (bool, error) { return re.Match([]byte(s)) }

// Replace is kc::Regex::replace: every match in s (from the left, each search starting
// where the last match ended, with '^' no longer matching there) is replaced by alt,
// in which "$&" and "$0" stand for the match, "$1" to "$9" for its groups (nothing for a
// group that took no part), and '$' before any other byte for that byte. s is read up
// to its first NUL and alt likewise; s comes back whole when nothing matches, and as it
// is when the pattern is empty (KC compiles it without submatches). After an empty
// match at the start of what remains, the rest is copied as it is. The error is
// ErrBudget when the matching took more than DefaultBudget steps in all.
func (re *Regexp) Replace(s, alt string) (string, error) {
	if re.nosub {
		return s, nil
	}
	steps := DefaultBudget
	subject := []byte(cString(s))
	caps, err := re.find(subject, false, &steps)
	if err != nil || caps == nil {
		return s, err
	}
	alt = cString(alt)
	var out strings.Builder
	sp := subject
	first := true
	for len(sp) > 0 {
		caps, err := re.find(sp, !first, &steps)
		if err != nil {
			return s, err
		}
		if caps == nil {
			break
		}
		first = false
		out.Write(sp[:caps[0]])
		expand(&out, alt, sp, caps)
		sp = sp[caps[1]:]
		if caps[1] < 1 {
			break
		}
	}
	out.Write(sp)
	return out.String(), nil
}

// expand appends alt with its references resolved against the match caps in sp.
func expand(out *strings.Builder, alt string, sp []byte, caps []int) {
	for i := 0; i < len(alt); i++ {
		if alt[i] != '$' {
			out.WriteByte(alt[i])
			continue
		}
		if i+1 >= len(alt) {
			break // a '$' at the end stands for nothing
		}
		c := alt[i+1]
		i++
		switch {
		case '0' <= c && c <= '9':
			n := int(c - '0')
			if 2*n+1 < len(caps) && caps[2*n] >= 0 && caps[2*n+1] >= 0 {
				out.Write(sp[caps[2*n]:caps[2*n+1]])
			}
		case c == '&':
			out.Write(sp[caps[0]:caps[1]])
		default:
			out.WriteByte(c)
		}
	}
}

// find returns the leftmost-longest match in s with its groups (2 positions each, -1
// when unset), or nil.
func (re *Regexp) find(s []byte, notbol bool, steps *int) ([]int, error) {
	if re.goRE == nil {
		return re.prog.search(s, notbol, true, steps)
	}
	g := re.goRE
	if notbol {
		g = re.goNotBOL
	}
	if isASCII(s) {
		return g.FindSubmatchIndex(s), nil
	}
	caps := g.FindSubmatchIndex(latin1(s))
	for i, p := range caps {
		if p >= 0 {
			caps[i] = latin1Offset(s, p)
		}
	}
	return caps, nil
}

// MatchString is kc::Regex::match(s, pattern): whether s contains a match of pattern.
// An invalid pattern gives false with its *Error (KC answers false alone).
func MatchString(s, pattern string) (bool, error) {
	re, err := Compile(pattern)
	if err != nil {
		return false, err
	}
	return re.MatchString(s)
}

// ReplaceString is kc::Regex::replace(s, pattern, alt) (see Regexp.Replace). An
// invalid pattern gives s back with its *Error (KC gives s back alone).
func ReplaceString(s, pattern, alt string) (string, error) {
	re, err := Compile(pattern)
	if err != nil {
		return s, err
	}
	return re.Replace(s, alt)
}

// cString cuts s at its first NUL byte.
func cString(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// latin1 encodes each byte as the rune of the same number, so that Go's regexp, which
// works on runes, sees one rune per byte.
func latin1(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/2)
	for _, c := range b {
		if c < 0x80 {
			out = append(out, c)
		} else {
			out = append(out, 0xC0|c>>6, 0x80|c&0x3F)
		}
	}
	return out
}

// latin1Offset maps an offset in latin1(b) back to an offset in b.
func latin1Offset(b []byte, off int) int {
	t := 0
	for i, c := range b {
		if t >= off {
			return i
		}
		t++
		if c >= 0x80 {
			t++
		}
	}
	return len(b)
}

func hasLineFirst(n *node) bool {
	switch n.op {
	case opAssert:
		return n.assert == aLineFirst
	case opGroup, opRepeat:
		return hasLineFirst(n.sub)
	case opConcat, opAlt:
		for _, s := range n.subs {
			if hasLineFirst(s) {
				return true
			}
		}
	}
	return false
}

// backtracker returns the backtracking program even for a pattern Go's regexp runs
// (tests compare the two).
func (re *Regexp) backtracker() (*prog, error) {
	if re.prog != nil {
		return re.prog, nil
	}
	re.btOnce.Do(func() { re.btProg, re.btErr = compileProg(re.tree, re.nsub) })
	return re.btProg, re.btErr
}
