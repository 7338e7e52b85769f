package replication

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// RTSFileSize is the size of a KT rts file: "%020d\n", 20 zero-padded
// decimal digits of the replication timestamp and a line feed.
const RTSFileSize = 21

// AppendRTS appends the rts file content for ts: 20 zero-padded decimal
// digits and "\n" (21 bytes; the largest uint64 has 20 digits).
func AppendRTS(dst []byte, ts uint64) []byte {
	return fmt.Appendf(dst, "%020d\n", ts)
}

// ParseRTS parses rts file content the way KT reads it, with KC's atoi:
// leading white space, an optional sign, then decimal digits up to the first
// other byte (LF or NUL); no digits means 0. Like KC, a value over 2^64
// wraps and a '-' negates in two's complement.
func ParseRTS(b []byte) uint64 {
	i := 0
	for i < len(b) && (b[i] == ' ' || (b[i] >= '\t' && b[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg = b[i] == '-'
		i++
	}
	var n uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	if neg {
		n = -n
	}
	return n
}

// ReadRTS reads the rts file at path (21 bytes: "%020d\n") and parses it with
// ParseRTS; an empty or zero-filled file gives 0. A missing file is an error
// wrapping fs.ErrNotExist, so the caller decides whether that means 0.
func ReadRTS(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read rts file: %w", err)
	}
	return ParseRTS(b), nil
}

// WriteRTS replaces the rts file at path with AppendRTS(ts) atomically: it
// writes a temporary file in the same directory, fsyncs it, renames it over
// path and fsyncs the directory, so a crash leaves either the old or the new
// 21 bytes, never a torn file. An existing file's permissions are kept;
// a new file gets 0644.
func WriteRTS(path string, ts uint64) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	perm := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		perm = st.Mode().Perm()
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write rts file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(AppendRTS(nil, ts)); err != nil {
		return fmt.Errorf("write rts file: %w", err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write rts file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync rts file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write rts file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename rts file: %w", err)
	}
	// Persist the rename; directories cannot be fsynced everywhere, so a
	// failure here is not reported.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
