package ktserver

import (
	"errors"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/posixre"
	"github.com/ktdproject/ktd/internal/script"
	"github.com/ktdproject/ktd/internal/store"
)

var (
	posInf = math.Inf(1)
	negInf = math.Inf(-1)
)

// formatDouble renders a double as C's printf("%f") does.
func formatDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'f', 6, 64)
}

// errCompile is KC's error for an invalid match_regex pattern.
var errCompile = &store.Error{Code: store.CodeLogic, Message: "compilation failed"}

// errMatchBudget is ktd's answer when matching a key took more steps than
// posixre allows (a pattern with back references that would stall KT).
var errMatchBudget = &store.Error{Code: store.CodeLogic, Message: "matching exceeded its budget"}

// errPostprocess is KT's error when a synchronize command fails.
var errPostprocess = &store.Error{Code: store.CodeLogic, Message: "postprocessing failed"}

func procSynchronize(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	if err := db.Synchronize(r.has("hard")); err != nil {
		return internal(err)
	}
	cmd, ok := r.in["command"]
	if !ok || cmd == "" {
		return nil
	}
	// KT refuses command names that could leave the -cmd directory, and
	// answers 500 (not 450) when the command fails.
	if strings.Contains(cmd, "/") || cmd == "." || cmd == ".." {
		return internal(errPostprocess)
	}
	ts := fmt.Sprintf("%020d", pureClock(r.s.now()))
	c := exec.CommandContext(r.s.ctx, filepath.Join(r.s.cfg.CommandDir, cmd), db.Spec().Path, ts)
	if err := c.Run(); err != nil {
		r.s.logger.Warn("synchronize command failed", "command", cmd, "err", err)
		return internal(errPostprocess)
	}
	return nil
}

// internal marks a database error as an RVEINTERNAL (500) failure whatever
// its code, as KT does for synchronize.
func internal(err error) error {
	_, msg := errorCode(err)
	return &rpcError{codeInternal, msg}
}

// matchMax returns the max parameter: absent or negative means no limit.
func (r *call) matchMax() int64 {
	v, ok := r.in["max"]
	if !ok {
		return -1
	}
	return atoi(v)
}

// outMatches writes match_* results: "_key" = order index, then num.
func (r *call) outMatches(keys []string) {
	for i, k := range keys {
		r.setInt("_"+k, int64(i))
	}
	r.setInt("num", int64(len(keys)))
}

// scanMatches returns, in key order, the keys starting with prefix for
// which match holds, at most max of them (negative: no limit). Like KC it
// sees expired records that the sweep has not removed yet. An error of
// match ends the scan and is returned.
func scanMatches(db *store.DB, prefix []byte, max int64, match func(key []byte) (bool, error)) ([]string, error) {
	var keys []string
	if max == 0 {
		return nil, nil
	}
	var merr error
	err := db.Scan(prefix, func(k []byte) bool {
		ok, err := match(k)
		if err != nil {
			merr = err
			return false
		}
		if ok {
			keys = append(keys, string(k))
		}
		return max < 0 || int64(len(keys)) < max
	})
	if err == nil {
		err = merr
	}
	return keys, err
}

func procMatchPrefix(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	prefix, ok := r.in["prefix"]
	if !ok {
		return errInvalid
	}
	r.s.stats.misc.Add(1)
	keys, err := scanMatches(db, []byte(prefix), r.matchMax(), func([]byte) (bool, error) { return true, nil })
	if err != nil {
		return err
	}
	r.outMatches(keys)
	return nil
}

func procMatchRegex(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	pat, ok := r.in["regex"]
	if !ok {
		return errInvalid
	}
	r.s.stats.misc.Add(1)
	// KC compiles with regcomp(REG_EXTENDED|REG_NOSUB): glibc's POSIX ERE
	// with its GNU extensions, unanchored, the key read as a C string.
	re, err := posixre.Compile(pat)
	if err != nil {
		return errCompile
	}
	keys, err := scanMatches(db, nil, r.matchMax(), func(k []byte) (bool, error) {
		ok, err := re.Match(k)
		if errors.Is(err, posixre.ErrBudget) {
			r.s.logger.Warn("match_regex: a key took too many steps to match", "regex", pat)
			return false, errMatchBudget
		}
		return ok, err
	})
	if err != nil {
		return err
	}
	r.outMatches(keys)
	return nil
}

func procMatchSimilar(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	origin, ok := r.in["origin"]
	if !ok {
		return errInvalid
	}
	r.s.stats.misc.Add(1)
	rng := int64(1)
	if v, ok := r.in["range"]; ok {
		if n := atoi(v); n >= 0 {
			rng = n
		}
	}
	utf := r.has("utf")
	max := r.matchMax()

	type hit struct {
		key  string
		dist int
	}
	var hits []hit
	var o []rune
	if utf {
		o = []rune(origin)
	}
	err = db.Scan(nil, func(k []byte) bool {
		var d int
		if utf {
			kr := []rune(string(k))
			if absDiff(len(kr), len(o)) > rng {
				return true
			}
			d = levenshtein(o, kr)
		} else {
			if absDiff(len(k), len(origin)) > rng {
				return true
			}
			d = levenshtein([]byte(origin), k)
		}
		// The recordings show KC also drops keys farther than range.
		if int64(d) <= rng {
			hits = append(hits, hit{string(k), d})
		}
		return true
	})
	if err != nil {
		return err
	}
	// Most similar first; ties in key order (the scan order of an
	// ordered store).
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].dist < hits[j].dist })
	if max >= 0 && int64(len(hits)) > max {
		hits = hits[:max]
	}
	keys := make([]string, len(hits))
	for i, h := range hits {
		keys[i] = h.key
	}
	r.outMatches(keys)
	return nil
}

func absDiff(a, b int) int64 {
	if a > b {
		return int64(a - b)
	}
	return int64(b - a)
}

// levenshtein is the edit distance between a and b.
func levenshtein[T comparable](a, b []T) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Scripting. With -scr, play_script calls a global function of the script
// (internal/script) in one of Threads Lua states; without it play_script is
// disabled. ktd's own transaction procedures are answered in both cases.

// scriptCall runs procedure name with input in for connection c (whose
// view of the databases the script sees). It returns the output map and KT's
// return value (0 success, 1 no such procedure, others failure); a
// procedure stopped by its budget returns an error for KT's status.
func (s *Server) scriptCall(c *conn, name string, in map[string]string) (map[string]string, int, error) {
	if s.script == nil {
		return nil, 1, errScriptDisabled
	}
	s.stats.script.Add(1)
	out, rv, err := s.script.Call(s.ctx, name, in, c.dbAt)
	var le *script.LimitError
	if errors.As(err, &le) {
		code := codeTimeout
		if le.Kind == "memory" {
			code = codeInternal
		}
		return nil, rv, &rpcError{code, msgScriptFail + ": stopped: " + le.Msg}
	}
	if err != nil {
		return nil, rv, &rpcError{codeInternal, msgScriptFail}
	}
	return out, rv, nil
}

var errScriptDisabled = &rpcError{codeNoImpl, msgScriptOff}

func isAlnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func procPlayScript(r *call) error {
	// ktd's own procedures answer whether or not scripting is enabled.
	if err, ok := r.c.txProcedure(r.in["name"]); ok {
		r.s.stats.script.Add(1)
		return err
	}
	// The disabled check comes before the parameter check in KT.
	if r.s.script == nil {
		return errScriptDisabled
	}
	name := r.in["name"]
	if !isAlnum(name) {
		return errInvalid
	}
	in := make(map[string]string)
	for k, v := range r.in {
		if len(k) > 0 && k[0] == '_' {
			in[k[1:]] = v
		}
	}
	out, rv, err := r.s.scriptCall(r.c, name, in)
	if err != nil {
		return err
	}
	switch rv {
	case 0:
		for k, v := range out {
			r.set("_"+k, v)
		}
		return nil
	case 1:
		return &rpcError{codeNoImpl, msgNoScript}
	case 2:
		return &rpcError{codeInvalid, msgScriptFail}
	case 3:
		return &rpcError{codeLogic, msgScriptFail}
	case 4:
		return &rpcError{codeTimeout, msgScriptFail}
	}
	return &rpcError{codeInternal, msgScriptFail}
}

func procULogList(r *call) error {
	if r.s.repl.log == nil {
		return &rpcError{codeInvalid, msgNoULog}
	}
	return r.s.repl.ulogList(r)
}

func procULogRemove(r *call) error {
	if r.s.repl.log == nil {
		return &rpcError{codeInvalid, msgNoULog}
	}
	ts := r.s.repl.log.Horizon() + 1 // absent: every record committed so far
	if v, ok := r.in["ts"]; ok {
		if v == "now" {
			ts = uint64(pureClock(r.s.now()))
		} else {
			ts = uint64(atoi(v))
		}
	}
	return r.s.repl.ulogRemove(ts)
}

func procTuneReplication(r *call) error {
	if r.s.cfg.RTSPath == "" {
		return &rpcError{codeNoImpl, msgNoRTS}
	}
	host := r.in["host"]
	port := int64(1978)
	if v, ok := r.in["port"]; ok {
		if p := atoi(v); p >= 1 {
			port = p
		}
	}
	ts := int64(-1)
	if v, ok := r.in["ts"]; ok {
		if v == "now" {
			ts = pureClock(r.s.now())
		} else {
			ts = atoi(v)
		}
	}
	iv := -1.0
	if v, ok := r.in["iv"]; ok {
		iv = ktproto.Atof(v)
	}
	return r.s.repl.tune(host, int(port), ts, iv)
}
