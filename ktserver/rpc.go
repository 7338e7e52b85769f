package ktserver

import (
	"errors"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// KT's RPC return values (RPCClient::ReturnValue) as HTTP status codes.
const (
	codeOK       = 200
	codeInvalid  = 400 // RVEINVALID
	codeLogic    = 450 // RVELOGIC
	codeInternal = 500 // RVEINTERNAL
	codeNoImpl   = 501 // RVENOIMPL
	codeTimeout  = 503 // RVETIMEOUT
)

// KT's fixed error texts (ktserver.cc).
const (
	msgNoDB        = "no such database"
	msgInvalid     = "invalid parameters"
	msgNoCursor    = "no such cursor"
	msgTimedOut    = "the condition timed out"
	msgScriptOff   = "the scripting extention is disabled" // sic, as KT
	msgNoScript    = "no such scripting procedure"
	msgScriptFail  = "the scripting procedure failed"
	msgNoRTS       = "the RTS file is not set"
	msgNoULog      = "no update log allows no replication"
	contentTypeTSV = "text/tab-separated-values"
)

// rpcError is a failed RPC: the HTTP code and the ERROR text.
type rpcError struct {
	code int
	msg  string
}

func (e *rpcError) Error() string { return e.msg }

var (
	errInvalid  = &rpcError{codeInvalid, msgInvalid}
	errNoDB     = &rpcError{codeInvalid, msgNoDB}
	errNoCursor = &rpcError{codeInvalid, msgNoCursor}
)

// errorCode maps an error to KT's status code and ERROR text, the one place
// where that mapping lives (KT's ktrpc.h). Database errors render as
// "DB: <code>: <name>: <message>"; KT answers 450 for record duplication,
// missing records and logical inconsistencies, 501 for "not implemented"
// and 500 for the rest.
func errorCode(err error) (int, string) {
	var re *rpcError
	if errors.As(err, &re) {
		return re.code, re.msg
	}
	var se *store.Error
	if errors.As(err, &se) {
		msg := "DB: " + se.Error()
		switch se.Code {
		case store.CodeDuplicate, store.CodeNoRecord, store.CodeLogic:
			return codeLogic, msg
		case store.CodeNoImpl:
			return codeNoImpl, msg
		}
		return codeInternal, msg
	}
	return codeInternal, "DB: 9: system error: " + err.Error()
}

// call is one RPC in progress.
type call struct {
	c    *conn
	s    *Server
	name string
	in   map[string]string
	out  []ktproto.KV
	db   *store.DB // nil when DB names nothing
	cur  *cursor   // nil unless CUR resolved to a cursor
}

func (r *call) set(k, v string)          { r.out = append(r.out, ktproto.KV{Key: k, Value: v}) }
func (r *call) setInt(k string, v int64) { r.set(k, strconv.FormatInt(v, 10)) }

// has reports a presence-only flag: KT treats "utf=0" as true.
func (r *call) has(k string) bool {
	_, ok := r.in[k]
	return ok
}

// xt returns the request xt (KT TimedDB semantics), or store.NoXT.
func (r *call) xt() int64 {
	v, ok := r.in["xt"]
	if !ok {
		return store.NoXT
	}
	return atoi(v)
}

func atoi(s string) int64 { return ktproto.Atoi(s) }

type procedure func(r *call) error

// procedures are KT's RPC procedures by name. Cursor procedures are looked
// up through the same table.
var procedures map[string]procedure

func init() {
	procedures = map[string]procedure{
		"void":             func(*call) error { return nil },
		"echo":             procEcho,
		"report":           procReport,
		"play_script":      procPlayScript,
		"snapshot":         procSnapshot, // ktd
		"digest":           procDigest,   // ktd
		"tune_replication": procTuneReplication,
		"ulog_list":        procULogList,
		"ulog_remove":      procULogRemove,
		"status":           procStatus,
		"clear":            procClear,
		"synchronize":      procSynchronize,
		"vacuum":           procVacuum,
		"set":              recordWrite((*store.DB).Set),
		"add":              recordWrite((*store.DB).Add),
		"replace":          recordWrite((*store.DB).Replace),
		"append":           recordWrite((*store.DB).Append),
		"increment":        procIncrement,
		"increment_double": procIncrementDouble,
		"cas":              procCAS,
		"remove":           procRemove,
		"get":              procGet,
		"check":            procCheck,
		"seize":            procSeize,
		"set_bulk":         procSetBulk,
		"remove_bulk":      procRemoveBulk,
		"get_bulk":         procGetBulk,
		"match_prefix":     procMatchPrefix,
		"match_regex":      procMatchRegex,
		"match_similar":    procMatchSimilar,
		"cur_jump":         procCurJump,
		"cur_jump_back":    procCurJumpBack,
		"cur_step":         procCurStep,
		"cur_step_back":    procCurStepBack,
		"cur_set_value":    procCurSetValue,
		"cur_remove":       procCurRemove,
		"cur_get_key":      curGet(outKey),
		"cur_get_value":    curGet(outValue),
		"cur_get":          curGet(outRecord),
		"cur_seize":        procCurSeize,
	}
}

// handleRPC runs one RPC in KT's order: WAIT, resolve DB, resolve CUR
// (creating the cursor if new), dispatch, SIGNAL.
func (c *conn) handleRPC(req *ktproto.Request) *ktproto.Response {
	s := c.s
	start := time.Now()
	sc := &c.rpc
	if sc.in == nil {
		sc.in = make(map[string]string, 8)
	}
	name := ktproto.URLDecode(req.Path[5:])
	r := &sc.call
	*r = call{c: c, s: s, name: name, out: sc.out[:0],
		in: ktproto.ParseInputInto(sc.in, req.Query, req.Header["content-type"], req.Body)}

	err := r.run()

	code := codeOK
	if err != nil {
		var msg string
		code, msg = errorCode(err)
		r.set("ERROR", msg)
	}
	s.metrics.observe(name, code, time.Since(start))
	body, ctype := ktproto.AppendTSV(sc.body[:0], r.out)
	sc.hdr[0] = ktproto.Header{Name: "Content-Type", Value: ctype}
	sc.resp = ktproto.Response{
		Code:          code,
		Headers:       sc.hdr[:],
		Body:          body,
		ContentLength: -1, // HEAD on an RPC path carries no Content-Length in KT
	}
	sc.keep(r.out, body)
	*r = call{}
	return &sc.resp
}

// rpcScratch is what a connection's RPC calls reuse from one call to the next: the call,
// its input map and output list, the response and its body. The response is copied into
// the connection's output before the next call begins.
type rpcScratch struct {
	call call
	in   map[string]string
	out  []ktproto.KV
	body []byte
	resp ktproto.Response
	hdr  [1]ktproto.Header
}

// keep holds on to the call's buffers for the next call, unless a large call grew them:
// an idle connection does not pin what one big request needed.
func (sc *rpcScratch) keep(out []ktproto.KV, body []byte) {
	const maxKept = 64
	if len(sc.in) > maxKept {
		sc.in = nil
	} else {
		clear(sc.in)
	}
	if cap(out) > maxKept {
		out = nil
	}
	clear(out)
	sc.out = out[:0]
	if cap(body) > 64<<10 {
		body = nil
	}
	sc.body = body[:0]
}

func (r *call) run() error {
	s := r.s
	if err := s.lim.checkInput(r.in); err != nil {
		return err
	}
	if w, ok := r.in["WAIT"]; ok {
		wt := ktproto.Atof(r.in["WAITTIME"])
		d := 30 * time.Second
		if wt > 0 {
			d = time.Duration(wt * float64(time.Second))
		}
		if !s.conds.wait(s.ctx, w, d) {
			return &rpcError{codeTimeout, msgTimedOut}
		}
	}
	dbi := s.lookupDB(r.in["DB"])
	if dbi >= 0 {
		r.db = r.c.dbAt(dbi)
	}
	if curExpr, ok := r.in["CUR"]; ok && curExpr != "" && curExpr[0] >= '0' && curExpr[0] <= '9' {
		id := atoi(curExpr)
		cur, existed := r.c.cursors[id]
		if existed && r.name == "cur_delete" {
			cur.c.Close()
			delete(r.c.cursors, id)
			return nil // KT returns at once: no SIGNAL processing
		}
		if !existed && r.db != nil {
			if r.c.cursors == nil {
				r.c.cursors = make(map[int64]*cursor)
			}
			cur = &cursor{dbi: dbi, c: r.db.Cursor()}
			r.c.cursors[id] = cur
		}
		if cur != nil {
			// A cursor follows its connection into and out of transactions.
			cur.c.SetDB(r.c.dbAt(cur.dbi))
		}
		r.cur = cur
	}

	var err error
	if p, ok := procedures[r.name]; ok {
		err = p(r)
	} else {
		err = &rpcError{codeNoImpl, "not implemented: " + r.name}
	}

	if sig, ok := r.in["SIGNAL"]; ok {
		n := s.conds.signal(sig, r.has("SIGNALBROAD"))
		r.setInt("SIGNALED", int64(n))
	}
	return err
}

func procEcho(r *call) error {
	for k, v := range r.in {
		r.set(k, v)
	}
	return nil
}

// needDB returns the selected database or "no such database".
func (r *call) needDB() (*store.DB, error) {
	if r.db == nil {
		return nil, errNoDB
	}
	return r.db, nil
}

// needKeyValue returns the key and value parameters; both required.
func (r *call) needKeyValue() (*store.DB, []byte, []byte, error) {
	db, err := r.needDB()
	if err != nil {
		return nil, nil, nil, err
	}
	k, ok := r.in["key"]
	if !ok {
		return nil, nil, nil, errInvalid
	}
	v, ok := r.in["value"]
	if !ok {
		return nil, nil, nil, errInvalid
	}
	kv := make([]byte, len(k)+len(v)) // one allocation for both
	copy(kv, k)
	copy(kv[len(k):], v)
	return db, kv[:len(k):len(k)], kv[len(k):], nil
}

func (r *call) needKey() (*store.DB, []byte, error) {
	db, err := r.needDB()
	if err != nil {
		return nil, nil, err
	}
	k, ok := r.in["key"]
	if !ok {
		return nil, nil, errInvalid
	}
	return db, []byte(k), nil
}

// countSet records a set-type operation for report's cnt_set counters.
func (r *call) countSet(err error) error {
	r.s.stats.set.Add(1)
	if err != nil {
		r.s.stats.setMiss.Add(1)
	}
	return err
}

func (r *call) countGet(err error) error {
	r.s.stats.get.Add(1)
	if err != nil {
		r.s.stats.getMiss.Add(1)
	}
	return err
}

func (r *call) countRemove(err error) error {
	r.s.stats.remove.Add(1)
	if err != nil {
		r.s.stats.removeMiss.Add(1)
	}
	return err
}

// recordWrite makes set, add, replace and append: key and value required,
// xt optional, counted as set operations.
func recordWrite(op func(db *store.DB, key, value []byte, xt int64) error) procedure {
	return func(r *call) error {
		db, k, v, err := r.needKeyValue()
		if err != nil {
			return err
		}
		return r.countSet(op(db, k, v, r.xt()))
	}
}

func procIncrement(r *call) error {
	db, k, err := r.needKey()
	if err != nil {
		return err
	}
	numStr, ok := r.in["num"]
	if !ok {
		return errInvalid
	}
	num := atoi(numStr)
	var orig int64
	switch o := r.in["orig"]; o {
	case "try":
		orig = store.OrigTry
	case "set":
		orig = store.OrigSet
	default:
		orig = atoi(o)
	}
	n, err := db.Increment(k, num, orig, r.xt())
	if err := r.countSet(err); err != nil {
		return err
	}
	r.setInt("num", n)
	return nil
}

func procIncrementDouble(r *call) error {
	db, k, err := r.needKey()
	if err != nil {
		return err
	}
	numStr, ok := r.in["num"]
	if !ok {
		return errInvalid
	}
	num := ktproto.Atof(numStr)
	var orig float64
	switch o := r.in["orig"]; o {
	case "try":
		orig = negInf
	case "set":
		orig = posInf
	default:
		orig = ktproto.Atof(o)
	}
	n, err := db.IncrementDouble(k, num, orig, r.xt())
	if err := r.countSet(err); err != nil {
		return err
	}
	r.set("num", formatDouble(n))
	return nil
}

func procCAS(r *call) error {
	db, k, err := r.needKey()
	if err != nil {
		return err
	}
	oval, hasO := r.in["oval"]
	nval, hasN := r.in["nval"]
	return r.countSet(db.CAS(k, []byte(oval), hasO, []byte(nval), hasN, r.xt()))
}

func procRemove(r *call) error {
	db, k, err := r.needKey()
	if err != nil {
		return err
	}
	return r.countRemove(db.Remove(k))
}

func (r *call) setXT(xt int64) {
	if xt < store.XTMax {
		r.setInt("xt", xt)
	}
}

func procGet(r *call) error {
	db, k, err := r.needKey()
	if err != nil {
		return err
	}
	v, xt, err := db.Get(k)
	if err := r.countGet(err); err != nil {
		return err
	}
	r.set("value", ownedString(v))
	r.setXT(xt)
	return nil
}

// ownedString returns b as a string without copying it. b must be the caller's
// own (a value the store returned) and never be modified afterwards.
func ownedString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func procCheck(r *call) error {
	db, k, err := r.needKey()
	if err != nil {
		return err
	}
	n, xt, err := db.Check(k)
	if err := r.countGet(err); err != nil {
		return err
	}
	r.setInt("vsiz", n)
	r.setXT(xt)
	return nil
}

func procSeize(r *call) error {
	db, k, err := r.needKey()
	if err != nil {
		return err
	}
	v, xt, err := db.Seize(k)
	r.countGet(err)
	if err := r.countRemove(err); err != nil {
		return err
	}
	r.set("value", string(v))
	r.setXT(xt)
	return nil
}

// bulkKeys returns the "_"-prefixed entries of the input with the prefix
// stripped, in input-map order (KT iterates a std::map: sorted).
func (r *call) bulkKeys() []string {
	var keys []string
	for k := range r.in {
		if len(k) > 0 && k[0] == '_' {
			keys = append(keys, k[1:])
		}
	}
	slices.Sort(keys)
	return keys
}

// bulkKeyBytes is bulkKeys as byte slices, as the store takes them.
func (r *call) bulkKeyBytes() [][]byte {
	keys := r.bulkKeys()
	bk := make([][]byte, len(keys))
	for i, k := range keys {
		bk[i] = []byte(k)
	}
	return bk
}

func procSetBulk(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	xt := r.xt()
	keys := r.bulkKeys()
	recs := make([]store.Record, len(keys))
	for i, k := range keys {
		recs[i] = store.Record{Key: []byte(k), Value: []byte(r.in["_"+k]), XT: xt}
	}
	n, err := db.SetBulk(recs, r.has("atomic"))
	r.s.stats.set.Add(int64(len(recs)))
	if err != nil {
		r.s.stats.setMiss.Add(int64(len(recs) - n))
		return err
	}
	r.setInt("num", int64(n))
	return nil
}

func procRemoveBulk(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	keys := r.bulkKeyBytes()
	n, err := db.RemoveBulk(keys, r.has("atomic"))
	r.s.stats.remove.Add(int64(len(keys)))
	if err != nil {
		return err
	}
	r.s.stats.removeMiss.Add(int64(len(keys) - n))
	r.setInt("num", int64(n))
	return nil
}

func procGetBulk(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	keys := r.bulkKeyBytes()
	recs, err := db.GetBulk(keys)
	r.s.stats.get.Add(int64(len(keys)))
	if err != nil {
		return err
	}
	r.s.stats.getMiss.Add(int64(len(keys) - len(recs)))
	for _, rec := range recs {
		r.set("_"+string(rec.Key), ownedString(rec.Value))
	}
	r.setInt("num", int64(len(recs)))
	return nil
}

func procStatus(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	for k, v := range db.Status() {
		r.set(k, v)
	}
	return nil
}

func procClear(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	return db.Clear()
}

func procVacuum(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	return db.Vacuum(atoi(r.in["step"]))
}
