package store

import (
	"bytes"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// lookupMany reads the stored forms of many keys with one iterator, seeking
// them in ascending order so that each seek continues from the last one
// (Pebble then steps instead of searching from the top). That is several
// times cheaper than one Get per key. fn is called once per distinct key
// found, in key order; stored is valid only during the call.
func lookupMany(r reader, keys [][]byte, fn func(key, stored []byte)) error {
	if len(keys) == 0 {
		return nil
	}
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, bytes.Compare)
	sorted = slices.CompactFunc(sorted, func(a, b []byte) bool { return bytes.Equal(a, b) })
	lower := dataKey(sorted[0])
	upper := prefixSuccessor(dataKey(sorted[len(sorted)-1]))
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return sysErr("iterator", err)
	}
	var dk []byte
	for _, k := range sorted {
		dk = append(append(dk[:0], prefixData), k...)
		if !it.SeekGE(dk) {
			if it.Error() != nil {
				break
			}
			continue
		}
		if bytes.Equal(it.Key(), dk) {
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return sysErr("read value", err)
			}
			fn(k, v)
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return sysErr("iterate", err)
	}
	if err := it.Close(); err != nil {
		return sysErr("close iterator", err)
	}
	return nil
}
