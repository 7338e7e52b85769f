package replication

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestRTSRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slave.rts")
	for _, ts := range []uint64{0, 1, 1293014017613000000, 1795646778538000000, math.MaxUint64} {
		if err := WriteRTS(path, ts); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != RTSFileSize || b[20] != '\n' {
			t.Errorf("rts file for %d is %q (%d bytes), want 21 bytes ending in LF", ts, b, len(b))
		}
		got, err := ReadRTS(path)
		if err != nil || got != ts {
			t.Errorf("ReadRTS = %d, %v; want %d", got, err, ts)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "18446744073709551615\n" {
		t.Errorf("max rts file %q", b)
	}
	if err := WriteRTS(path, 1293014017613000000); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "01293014017613000000\n" {
		t.Errorf("T15 rts file %q", b)
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only slave.rts", len(entries))
	}
}

func TestRTSPermissionsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slave.rts")
	if err := WriteRTS(path, 1); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("new rts file mode %v, %v; want 0644", st.Mode(), err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteRTS(path, 2); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("rewritten rts file mode %v, %v; want 0600 kept", st.Mode(), err)
	}
}

func TestReadRTSMissing(t *testing.T) {
	_, err := ReadRTS(filepath.Join(t.TempDir(), "nothere.rts"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing rts file: %v, want fs.ErrNotExist", err)
	}
	if err := WriteRTS(filepath.Join(t.TempDir(), "no", "dir.rts"), 1); err == nil {
		t.Error("WriteRTS into a missing directory succeeded")
	}
}

func TestParseRTS(t *testing.T) {
	for in, want := range map[string]uint64{
		"": 0,
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00": 0, // fresh 21-byte file
		"01795646778538000000\n":  1795646778538000000,
		"01795646778538000000":    1795646778538000000,
		"  \t42\n":                42,
		"+7":                      7,
		"123abc":                  123,
		"abc123":                  0,
		"-1":                      math.MaxUint64, // KC atoi -1 read into a uint64
		"18446744073709551615\n":  math.MaxUint64,
		"00000000000000000005\nX": 5,
	} {
		if got := ParseRTS([]byte(in)); got != want {
			t.Errorf("ParseRTS(%q) = %d, want %d", in, got, want)
		}
	}
	// A file shorter than 21 bytes (hand-written) still reads with atoi.
	path := filepath.Join(t.TempDir(), "hand.rts")
	if err := os.WriteFile(path, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadRTS(path); err != nil || got != 12345 {
		t.Errorf("ReadRTS(hand-written) = %d, %v", got, err)
	}
}
