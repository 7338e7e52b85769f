package ktserver

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// handleREST serves KT's RESTful interface: GET, HEAD, PUT and DELETE of
// one record addressed as /[db/]key. Responses carry no Content-Type;
// failures put the database error in X-Kt-Error.
func (c *conn) handleREST(req *ktproto.Request) *ktproto.Response {
	start := time.Now()
	var resp *ktproto.Response
	proc := "rest_" + strings.ToLower(req.Method)
	switch req.Method {
	case "GET", "HEAD":
		resp = c.restGet(req)
	case "PUT":
		resp = c.restPut(req)
	case "DELETE":
		resp = c.restDelete(req)
	default:
		proc = "rest_unknown"
		resp = &ktproto.Response{Code: codeNoImpl}
	}
	c.s.metrics.observe(proc, resp.Code, time.Since(start))
	return resp
}

// restTarget splits a REST path into database and key (KT's rules): drop
// one leading '/'; if a '/' remains, the part before it names the database
// (URL-decoded; empty means DB 0) and one more '/' after it is skipped;
// the rest, URL-decoded, is the key.
func (c *conn) restTarget(path string) (*store.DB, []byte, bool) {
	p := strings.TrimPrefix(path, "/")
	dbi := 0
	if i := strings.IndexByte(p, '/'); i >= 0 {
		dbi = c.s.lookupDB(ktproto.URLDecode(p[:i]))
		p = strings.TrimPrefix(p[i+1:], "/")
	}
	if dbi < 0 {
		return nil, nil, false
	}
	return c.dbAt(dbi), []byte(ktproto.URLDecode(p)), true
}

var noSuchDB = []byte("no such database\n")

func restNoDB() *ktproto.Response {
	return &ktproto.Response{Code: codeInvalid, Body: noSuchDB, ContentLength: int64(len(noSuchDB))}
}

// restError answers a failed REST call: 404 for a missing record, 450 for
// add/replace conflicts, 500 otherwise, with the error in X-Kt-Error.
func restError(err error, code int) *ktproto.Response {
	_, msg := errorCode(err)
	return &ktproto.Response{
		Code:    code,
		Headers: []ktproto.Header{{Name: "X-Kt-Error", Value: msg}},
	}
}

func isNoRecord(err error) bool { return errors.Is(err, store.ErrNoRecord) }

func (c *conn) restGet(req *ktproto.Request) *ktproto.Response {
	db, key, ok := c.restTarget(req.Path)
	if !ok {
		return restNoDB()
	}
	v, xt, err := db.Get(key)
	c.s.stats.get.Add(1)
	if err != nil {
		c.s.stats.getMiss.Add(1)
		code := codeInternal
		if isNoRecord(err) {
			code = 404
		}
		return restError(err, code)
	}
	resp := &ktproto.Response{Code: codeOK, Body: v, ContentLength: int64(len(v))}
	if xt < store.XTMax {
		resp.Headers = []ktproto.Header{{Name: "X-Kt-Xt", Value: string(ktproto.AppendHTTPDate(nil, time.Unix(xt, 0)))}}
	}
	return resp
}

func (c *conn) restPut(req *ktproto.Request) *ktproto.Response {
	db, key, ok := c.restTarget(req.Path)
	if !ok {
		return restNoDB()
	}
	xt := store.NoXT
	if h, ok := req.Header["x-kt-xt"]; ok {
		// X-Kt-Xt is an absolute time; anything outside (0, XTMax) means
		// no expiration, as KT's strmktime-based handling does.
		if t, ok := ktproto.ParseKTTime(h); ok && t > 0 && t < store.XTMax {
			xt = -t
		}
	}
	value := req.Body
	if value == nil {
		value = []byte{}
	}
	var err error
	switch strings.ToLower(req.Header["x-kt-mode"]) {
	case "add":
		err = db.Add(key, value, xt)
	case "replace":
		err = db.Replace(key, value, xt)
	default:
		err = db.Set(key, value, xt)
	}
	c.s.stats.set.Add(1)
	if err != nil {
		c.s.stats.setMiss.Add(1)
		code := codeInternal
		if se, ok := err.(*store.Error); ok && (se.Code == store.CodeDuplicate || se.Code == store.CodeNoRecord) {
			code = codeLogic
		}
		return restError(err, code)
	}
	// KT's Location always names "localhost" (a KT bug kept for byte
	// compatibility) and appends the target exactly as sent.
	loc := "http://localhost"
	if port := c.localPort(); port != 80 {
		loc += ":" + strconv.Itoa(port)
	}
	return &ktproto.Response{
		Code:    201,
		Headers: []ktproto.Header{{Name: "Location", Value: loc + req.Target}},
	}
}

func (c *conn) localPort() int {
	if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 1978
}

func (c *conn) restDelete(req *ktproto.Request) *ktproto.Response {
	db, key, ok := c.restTarget(req.Path)
	if !ok {
		return restNoDB()
	}
	err := db.Remove(key)
	c.s.stats.remove.Add(1)
	if err != nil {
		c.s.stats.removeMiss.Add(1)
		code := codeInternal
		if isNoRecord(err) {
			code = 404
		}
		return restError(err, code)
	}
	return &ktproto.Response{Code: 204}
}
