package conformance

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// reportTolerated are report lines whose values may differ from the
// recording: ktd is not linked to Kyoto Cabinet. A difference there makes
// the scenario "differs", not "fails".
var reportTolerated = map[string]bool{
	"conf_kc_version":  true,
	"conf_kc_features": true,
	"conf_kt_features": true,
}

// reportStable reports whether a report line's value is the same on every
// fresh server (README "Determinism"); other values only need the
// recorded shape.
func reportStable(name string) bool {
	switch {
	case strings.HasPrefix(name, "cnt_"), strings.HasPrefix(name, "db_"):
		return true
	}
	switch name {
	case "serv_conn_count", "serv_task_count", "serv_thread_count",
		"conf_kt_version", "conf_os_name":
		return true
	}
	return false
}

var (
	fixed6RE = regexp.MustCompile(`^-?[0-9]+\.[0-9]{6}$`)
	digitsRE = regexp.MustCompile(`[0-9]+`)
)

// sameShape reports whether got has the form of the recorded value want:
// a %.6f number stays a %.6f number, and otherwise both are equal once
// every run of digits is replaced by "0" (so "count=3 size=12" fits
// "count=0 size=0", and any integer fits an integer).
func sameShape(got, want string) bool {
	if fixed6RE.MatchString(want) {
		return fixed6RE.MatchString(got)
	}
	return digitsRE.ReplaceAllString(got, "0") == digitsRE.ReplaceAllString(want, "0")
}

// compareReport compares a report response structurally. Head: same lines
// after normalisation, except that Content-Length must equal the received
// body length. Body: same line names in the same order; values equal for
// stable lines (only when exact is set: a shared server's counters differ)
// and of the recorded shape otherwise. It returns hard failures and soft
// differences (tolerated lines whose values differ).
func compareReport(got, want []byte, port string, exact bool) (hard, soft []string) {
	gotHead, gotBody, ok1 := bytes.Cut(got, []byte("\r\n\r\n"))
	wantHead, wantBody, ok2 := bytes.Cut(want, []byte("\r\n\r\n"))
	if !ok1 || !ok2 {
		return []string{"no complete HTTP head\n" + Diff(Normalize(got, want, port), want, false)}, nil
	}
	gh := strings.Split(string(Normalize(append(gotHead, "\r\n\r\n"...), want, port)), "\r\n")
	wh := strings.Split(string(wantHead)+"\r\n\r\n", "\r\n")
	if len(gh) != len(wh) {
		hard = append(hard, fmt.Sprintf("head has %d lines, want %d: got %q", len(gh), len(wh), gh))
	}
	for i := range min(len(gh), len(wh)) {
		if v, ok := strings.CutPrefix(gh[i], "Content-Length: "); ok && strings.HasPrefix(wh[i], "Content-Length: ") {
			if n, err := strconv.Atoi(v); err != nil || n != len(gotBody) {
				hard = append(hard, fmt.Sprintf("Content-Length %q but the body has %d bytes", v, len(gotBody)))
			}
		} else if gh[i] != wh[i] {
			hard = append(hard, fmt.Sprintf("head line %d: got %q, want %q", i, gh[i], wh[i]))
		}
	}
	h, s := compareReportBody(string(gotBody), string(wantBody), exact)
	return append(hard, h...), s
}

// compareReportBody compares the TSV lines of two report bodies.
func compareReportBody(got, want string, exact bool) (hard, soft []string) {
	gl, wl := reportLines(got), reportLines(want)
	if !strings.HasSuffix(got, "\n") {
		hard = append(hard, "body does not end in LF")
	}
	for i := range max(len(gl), len(wl)) {
		if i >= len(gl) {
			return append(hard, fmt.Sprintf("line %d: missing, want %q", i, wl[i][0])), soft
		}
		if i >= len(wl) {
			return append(hard, fmt.Sprintf("line %d: extra line %q", i, gl[i][0])), soft
		}
		name, gv, wv := wl[i][0], gl[i][1], wl[i][1]
		switch {
		case gl[i][0] != name:
			return append(hard, fmt.Sprintf("line %d: name %q, want %q", i, gl[i][0], name)), soft
		case gv == wv:
		case reportTolerated[name]:
			soft = append(soft, fmt.Sprintf("%s is %q (recorded %q)", name, gv, wv))
		case exact && reportStable(name):
			hard = append(hard, fmt.Sprintf("%s is %q, want %q", name, gv, wv))
		case !sameShape(gv, wv):
			hard = append(hard, fmt.Sprintf("%s is %q, not of the form of %q", name, gv, wv))
		}
	}
	return hard, soft
}

// reportLines splits a TSV body into name/value pairs (split at the first
// TAB; a line without TAB has an empty value).
func reportLines(body string) [][2]string {
	var out [][2]string
	for l := range strings.SplitSeq(strings.TrimSuffix(body, "\n"), "\n") {
		if l == "" && body == "" {
			break
		}
		n, v, _ := strings.Cut(l, "\t")
		out = append(out, [2]string{n, v})
	}
	return out
}
