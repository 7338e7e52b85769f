package script

import "github.com/ktdproject/ktd/internal/posixre"

// ere is a compiled POSIX extended regular expression, what Kyoto Cabinet's Regex gets
// from regcomp(REG_EXTENDED): glibc's dialect, GNU extensions included (posixre).
type ere struct{ re *posixre.Regexp }

// compileERE compiles pattern (a C string: it ends at a NUL byte); ok is false when
// regcomp would refuse it.
func compileERE(pattern string) (e *ere, ok bool) {
	re, err := posixre.Compile(pattern)
	if err != nil {
		return nil, false
	}
	return &ere{re}, true
}

// match reports whether the expression matches anywhere in s (a C string). A key whose
// matching exceeds posixre's step budget does not match.
func (e *ere) match(s string) bool {
	ok, err := e.re.MatchString(s)
	return ok && err == nil
}

// regexMatch is kc::Regex::match: false for a pattern that does not compile.
func regexMatch(str, pattern string) bool {
	e, ok := compileERE(pattern)
	return ok && e.match(str)
}

// regexReplace is kc::Regex::replace: every match of pattern in str (a C string)
// replaced by alt, where "$1".."$9" insert a group, "$&" and "$0" the whole match and
// "$" before any other character that character (see posixre.Regexp.Replace). A
// pattern that does not compile, or whose matching exceeds the step budget, leaves str
// as it is.
func regexReplace(str, pattern, alt string) string {
	out, err := posixre.ReplaceString(str, pattern, alt)
	if err != nil {
		return str
	}
	return out
}
