package kit

import (
	"cmp"
	"math"
)

// Quantile is the nearest-rank q-quantile (0 < q <= 1) of sorted, the zero
// value for none: the smallest value at least a fraction q of the values
// are no greater than.
func Quantile[T cmp.Ordered](sorted []T, q float64) T {
	if len(sorted) == 0 {
		var zero T
		return zero
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
