package store

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// KC database type numbers (kc::PolyDB::Type), reported as "type" and "realtype" by status.
const (
	TypePHash  = 16 // '-' prototype hash (memory)
	TypePTree  = 17 // '+' prototype tree (memory)
	TypeStash  = 24 // ':' stash (memory, KT's default)
	TypeCache  = 32 // '*' cache hash (memory, LRU capable)
	TypeGrass  = 33 // '%' cache tree (memory, LRU capable)
	TypeHash   = 48 // .kch file hash
	TypeTree   = 49 // .kct file tree
	TypeDir    = 64 // .kcd directory hash
	TypeForest = 65 // .kcf directory tree
)

// Spec is a parsed KT database argument "path[#name=value...]" (reference §8).
type Spec struct {
	Arg        string            // the argument as given
	Path       string            // the part before the first '#'
	Name       string            // Path after its last '/', the name DB= selects
	Type       int               // KC type number (TypePHash ... TypeForest)
	InMemory   bool              // types 16, 17, 24, 32, 33: nothing is written to disk
	Params     map[string]string // every #name=value, names as given
	Persistent bool              // ktopts=p (or ktoptions): no xt prefix stored, xt ignored
	CapCount   int64             // capcnt (KC; honoured on cache types with LRU eviction), -1 if unset
	CapSize    int64             // capsiz likewise, -1 if unset
	KTCapCount int64             // ktcapcnt/ktcapcount/ktcap_count, -1 if unset
	KTCapSize  int64             // ktcapsiz/ktcapsize/ktcap_size, -1 if unset
	CacheSize  int64             // msiz or pccap (KC's memory for caching the file): the cache of a file DB (Pebble's blocks and the row cache); 0 if unset
	Ignored    []string          // params accepted but meaningless on Pebble, in argument order
}

// typeNames maps the names accepted by "#type=" (KC PolyDB's words, the file suffixes and
// the single-character names) to type numbers. Numbers are accepted too.
var typeNames = map[string]int{
	"-": TypePHash, "phash": TypePHash, "kcph": TypePHash, "phdb": TypePHash,
	"+": TypePTree, "ptree": TypePTree, "kcpt": TypePTree, "ptdb": TypePTree,
	":": TypeStash, "stash": TypeStash, "kcs": TypeStash, "sdb": TypeStash,
	"*": TypeCache, "cache": TypeCache, "kcc": TypeCache, "cdb": TypeCache,
	"%": TypeGrass, "gcache": TypeGrass, "grass": TypeGrass, "kcg": TypeGrass, "gdb": TypeGrass,
	"kch": TypeHash, "hash": TypeHash, "hdb": TypeHash,
	"kct": TypeTree, "tree": TypeTree, "tdb": TypeTree,
	"kcd": TypeDir, "dir": TypeDir, "ddb": TypeDir,
	"kcf": TypeForest, "forest": TypeForest, "fdb": TypeForest,
}

// isMemoryType reports whether KC keeps databases of type t in memory only.
func isMemoryType(t int) bool {
	switch t {
	case TypePHash, TypePTree, TypeStash, TypeCache, TypeGrass:
		return true
	}
	return false
}

// ParseSpec parses a KT database argument. The type comes from the file name after the
// last '/': one of "-", "+", ":", "*", "%" or a KC suffix (.kch, .kct, .kcd, .kcf, .kcph,
// .kcpt, .kcs, .kcc, .kcg and the older .hdb, .tdb, ...), compared case-insensitively;
// "#type=" overrides it. A name without a recognised suffix and without "#type=" is an
// error, as Kyoto Cabinet refuses to open it. Parameters that are not "name=value"
// (exactly one '=') are skipped, like KC does. Numbers use KC's atoix syntax ("10k", "1g").
func ParseSpec(arg string) (Spec, error) {
	elems := strings.Split(arg, "#")
	s := Spec{
		Arg:        arg,
		Path:       elems[0],
		Params:     map[string]string{},
		CapCount:   -1,
		CapSize:    -1,
		KTCapCount: -1,
		KTCapSize:  -1,
	}
	if s.Path == "" {
		return Spec{}, fmt.Errorf("store: database %q: empty path", arg)
	}
	s.Name = s.Path[strings.LastIndexByte(s.Path, '/')+1:]
	s.Type = typeFromName(s.Name)

	typeParam := ""
	for _, el := range elems[1:] {
		fields := strings.Split(el, "=")
		if len(fields) != 2 {
			continue
		}
		name, value := fields[0], fields[1]
		s.Params[name] = value
		switch name {
		case "type":
			typeParam = value
		case "ktopts", "ktoptions":
			s.Persistent = strings.Contains(value, "p")
		case "ktcapcnt", "ktcapcount", "ktcap_count":
			s.KTCapCount = atoix(value)
		case "ktcapsiz", "ktcapsize", "ktcap_size":
			s.KTCapSize = atoix(value)
		case "capcnt", "capcount", "cap_count":
			s.CapCount = atoix(value)
		case "capsiz", "capsize", "cap_size":
			s.CapSize = atoix(value)
		case "msiz", "pccap":
			// KC's mapped region (hash, directory) and page cache (tree) sizes:
			// what a file database may keep in memory, the block cache on Pebble.
			s.CacheSize = max(s.CacheSize, atoix(value))
		default:
			s.Ignored = append(s.Ignored, name)
		}
	}
	if typeParam != "" {
		t, ok := typeNames[strings.ToLower(typeParam)]
		if !ok {
			n, err := strconv.Atoi(typeParam)
			if err != nil || !validType(n) {
				return Spec{}, fmt.Errorf("store: database %q: unknown database type %q", arg, typeParam)
			}
			t = n
		}
		s.Type = t
	}
	if s.Type == 0 {
		return Spec{}, fmt.Errorf("store: database %q: unknown database type (use a KC suffix such as .kch or .kct, or #type=)", arg)
	}
	s.InMemory = isMemoryType(s.Type)
	if !s.isCache() {
		// KC honours capcnt/capsiz only on the cache types.
		for _, name := range []string{"capcnt", "capcount", "cap_count", "capsiz", "capsize", "cap_size"} {
			if _, ok := s.Params[name]; ok {
				s.Ignored = append(s.Ignored, name)
			}
		}
		s.CapCount, s.CapSize = -1, -1
	}
	return s, nil
}

// isCache reports whether s is a KC cache DB, the only kind with LRU capacity limits.
func (s *Spec) isCache() bool { return s.Type == TypeCache || s.Type == TypeGrass }

func validType(t int) bool {
	for _, v := range typeNames {
		if v == t {
			return true
		}
	}
	return false
}

// typeFromName derives the KC type from a file name, 0 if unknown.
func typeFromName(name string) int {
	switch name {
	case "-", "+", ":", "*", "%":
		return typeNames[name]
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return 0
	}
	return suffixTypes[strings.ToLower(name[dot+1:])]
}

// suffixTypes maps file name suffixes to KC types.
var suffixTypes = map[string]int{
	"kcph": TypePHash, "phdb": TypePHash,
	"kcpt": TypePTree, "ptdb": TypePTree,
	"kcs": TypeStash, "sdb": TypeStash,
	"kcc": TypeCache, "cdb": TypeCache,
	"kcg": TypeGrass, "gdb": TypeGrass,
	"kch": TypeHash, "hdb": TypeHash,
	"kct": TypeTree, "tdb": TypeTree,
	"kcd": TypeDir, "ddb": TypeDir,
	"kcf": TypeForest, "fdb": TypeForest,
}

// atoix is kc::atoix: leading spaces, optional sign, digits, an optional decimal fraction,
// then an optional binary unit suffix (k, m, g, t, p, e). Anything unparsable yields 0.
func atoix(str string) int64 {
	i := 0
	for i < len(str) && str[i] > 0 && str[i] <= ' ' {
		i++
	}
	sign := 1.0
	if i < len(str) && str[i] == '-' {
		sign = -1
		i++
	} else if i < len(str) && str[i] == '+' {
		i++
	}
	num := 0.0
	for i < len(str) && str[i] >= '0' && str[i] <= '9' {
		num = num*10 + float64(str[i]-'0')
		i++
	}
	if i < len(str) && str[i] == '.' {
		i++
		base := 10.0
		for i < len(str) && str[i] >= '0' && str[i] <= '9' {
			num += float64(str[i]-'0') / base
			base *= 10
			i++
		}
	}
	num *= sign
	for i < len(str) && str[i] > 0 && str[i] <= ' ' {
		i++
	}
	if i < len(str) {
		switch str[i] {
		case 'k', 'K':
			num *= 1 << 10
		case 'm', 'M':
			num *= 1 << 20
		case 'g', 'G':
			num *= 1 << 30
		case 't', 'T':
			num *= 1 << 40
		case 'p', 'P':
			num *= 1 << 50
		case 'e', 'E':
			num *= 1 << 60
		}
	}
	if num >= math.MaxInt64 {
		return math.MaxInt64
	}
	if num <= math.MinInt64 {
		return math.MinInt64
	}
	return int64(num)
}
