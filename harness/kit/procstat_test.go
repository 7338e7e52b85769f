package kit

import "testing"

// parseStatCPU counts fields after the command name's last ')', which may
// hold spaces and parentheses.
func TestParseStatCPU(t *testing.T) {
	stat := []byte("42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0")
	got, err := parseStatCPU(stat)
	if err != nil || got != 4 {
		t.Fatalf("parseStatCPU = %v, %v; want 4", got, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Fatal("garbage parsed")
	}
}
