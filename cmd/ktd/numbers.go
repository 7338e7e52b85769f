package main

import (
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Numeric flags are parsed strictly, in the forms KT's own parsers read (KC's atoix for
// counts and sizes, atof for seconds), but without their leniency: KT reads "1q" as 1
// and "abc" as 0; ktd refuses both.

var (
	errNotNumber = errors.New("not a number")
	errNotWhole  = errors.New("not a whole number")
	errRange     = errors.New("out of range")
)

// atoixForm is KC atoix's form: a sign, digits, a fraction, a binary suffix.
var atoixForm = regexp.MustCompile(`^([+-]?)([0-9]+)(?:\.([0-9]+))?([kKmMgGtTpPeE]?)$`)

// decimalForm is a decimal number as KC atof reads it, without inf and nan.
var decimalForm = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// parseSize parses a byte size in KT's atoix form: "65536", "64k", "1.5m", "-1"; the
// suffixes k, m, g, t, p, e are binary (1024, 1024², ...), in either case. A fraction
// is truncated after scaling, as KT does.
func parseSize(s string) (int64, error) {
	m := atoixForm.FindStringSubmatch(s)
	if m == nil {
		return 0, errNotNumber
	}
	n, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return 0, errRange
	}
	shift := uint(10 * (1 + strings.IndexByte("kmgtpe", lower(m[4]))))
	if m[4] == "" {
		shift = 0
	}
	if shift > 0 && n > math.MaxInt64>>shift {
		return 0, errRange
	}
	n <<= shift
	if m[3] != "" {
		f, err := strconv.ParseFloat("0."+m[3], 64)
		if err != nil {
			return 0, errNotNumber
		}
		frac := int64(f * float64(int64(1)<<shift))
		if n > math.MaxInt64-frac {
			return 0, errRange
		}
		n += frac
	}
	if m[1] == "-" {
		n = -n
	}
	return n, nil
}

func lower(s string) byte {
	if s == "" {
		return 0
	}
	return strings.ToLower(s)[0]
}

// parseCount parses a whole number in KT's atoix form: "1978", "2k", "-1".
func parseCount(s string) (int64, error) {
	m := atoixForm.FindStringSubmatch(s)
	if m == nil {
		return 0, errNotNumber
	}
	if m[3] != "" {
		return 0, errNotWhole
	}
	return parseSize(s)
}

// parseDecimal parses a finite decimal number: "30", "0.5", "-2", "1e3".
func parseDecimal(s string) (float64, error) {
	if !decimalForm.MatchString(s) {
		return 0, errNotNumber
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, errRange
	}
	return f, nil
}

// parseSeconds parses decimal seconds into a duration.
func parseSeconds(s string) (time.Duration, error) {
	f, err := parseDecimal(s)
	if err != nil {
		return 0, err
	}
	ns := f * float64(time.Second)
	if math.Abs(ns) >= math.MaxInt64 {
		return 0, errRange
	}
	return time.Duration(ns), nil
}

// formatSize renders a byte size the way the flags take it: with the largest binary
// suffix that divides it ("256m", "64k", "1000").
func formatSize(n int64) string {
	for i := len("kmgtpe"); i >= 1; i-- {
		unit := int64(1) << (10 * i)
		if n != 0 && n%unit == 0 {
			return strconv.FormatInt(n/unit, 10) + string("kmgtpe"[i-1])
		}
	}
	return strconv.FormatInt(n, 10)
}
