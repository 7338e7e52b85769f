package posixre

import "testing"

func benchMatch(b *testing.B, pattern, subject string) {
	re := MustCompile(pattern)
	s := []byte(subject)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := re.Match(s); err != nil {
			b.Fatal(err)
		}
	}
}

// A key of a typical size against a pattern Go's regexp runs, one with a GNU anchor
// (the backtracking matcher with its visited bitmap) and one with a back reference.
func BenchmarkMatch_Translated(b *testing.B) {
	benchMatch(b, `^user:[0-9]+:\w+$`, "user:12345:profile_x")
}
func BenchmarkMatch_WordAnchor(b *testing.B) { benchMatch(b, `\<prof[a-z]*\>`, "user:12345:profile_x") }
func BenchmarkMatch_Backref(b *testing.B)    { benchMatch(b, `:([a-z])\1`, "user:12345:profile_xx") }
func BenchmarkMatch_Latin1(b *testing.B)     { benchMatch(b, `^.{4}:`, "\xe6\x9d\xb1\xe4:12345:profile_x") }
