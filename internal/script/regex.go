package script

import "regexp"

// ere is a compiled POSIX extended regular expression, what Kyoto Cabinet's Regex gets
// from regcomp(REG_EXTENDED). It is the package's only contact with a regular
// expression engine: Go's regexp in POSIX mode (leftmost-longest) for now, to be
// replaced by a glibc-compatible engine without changing its callers.
type ere struct{ re *regexp.Regexp }

// compileERE compiles pattern (a C string: it ends at a NUL byte); ok is false when
// regcomp would refuse it.
func compileERE(pattern string) (e *ere, ok bool) {
	re, err := regexp.CompilePOSIX(cstring(pattern))
	if err != nil {
		return nil, false
	}
	return &ere{re}, true
}

// match reports whether the expression matches anywhere in s (a C string).
func (e *ere) match(s string) bool { return e.re.MatchString(cstring(s)) }

// matches returns the successive matches in s as regexec finds them when called again
// from the end of each match with REG_NOTBOL: for each, the start and end of the whole
// match and of each group (-1 for a group that did not take part).
func (e *ere) matches(s string) [][]int { return e.re.FindAllStringSubmatchIndex(s, -1) }

// regexMatch is kc::Regex::match: false for a pattern that does not compile.
func regexMatch(str, pattern string) bool {
	e, ok := compileERE(pattern)
	return ok && e.match(str)
}

// regexReplace is kc::Regex::replace: every match of pattern in str (a C string)
// replaced by alt, where "$1".."$9" insert a group, "$&" and "$0" the whole match and
// "$" before any other character that character. An empty pattern or one that does
// not compile leaves str as it is, and so does a pattern without a match; after an
// empty match at the current position KC stops replacing.
func regexReplace(str, pattern, alt string) string {
	if cstring(pattern) == "" {
		return str
	}
	e, ok := compileERE(pattern)
	if !ok {
		return str
	}
	s := cstring(str)
	ms := e.matches(s)
	if len(ms) == 0 {
		return str
	}
	alt = cstring(alt)
	var out []byte
	pos := 0
	for _, m := range ms {
		if pos >= len(s) || m[0] < pos {
			break
		}
		out = append(out, s[pos:m[0]]...)
		for i := 0; i < len(alt); i++ {
			if alt[i] != '$' {
				out = append(out, alt[i])
				continue
			}
			if i+1 >= len(alt) {
				break
			}
			c := alt[i+1]
			i++
			switch {
			case c >= '0' && c <= '9':
				g := int(c - '0')
				if 2*g+1 < len(m) && m[2*g] >= 0 && m[2*g+1] >= 0 {
					out = append(out, s[m[2*g]:m[2*g+1]]...)
				}
			case c == '&':
				out = append(out, s[m[0]:m[1]]...)
			default:
				out = append(out, c)
			}
		}
		empty := m[1] == pos
		pos = m[1]
		if empty {
			break
		}
	}
	return string(append(out, s[pos:]...))
}
