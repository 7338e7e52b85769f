package store

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkApplyReplicated applies runs of replicated sets of random keys
// (1 M key space, 100-byte values) to a file database, as a replica does:
// the cost per record, for runs of a few sizes.
func BenchmarkApplyReplicated(b *testing.B) {
	for _, run := range []int{8, 32, 128} {
		b.Run(fmt.Sprint("run=", run), func(b *testing.B) {
			db := openFile(b, filepath.Join(b.TempDir(), "r.kct"), false)
			defer db.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			value := make([]byte, xtLen+100) // the stored form: no expiry, 100 bytes
			putXT(value, XTMax)
			changes := make([]Change, run)
			keys := make([][]byte, run)
			for i := range keys {
				keys[i] = make([]byte, 0, 16)
			}
			b.ResetTimer()
			pos := uint64(0)
			for i := 0; i < b.N; i += run {
				for j := range changes {
					keys[j] = fmt.Appendf(keys[j][:0], "%08d", rng.IntN(1_000_000))
					changes[j] = Change{Op: OpSet, Key: keys[j], Value: value}
				}
				pos++
				if err := db.ApplyReplicated(changes, 1, pos); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
