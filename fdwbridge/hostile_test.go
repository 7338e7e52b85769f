package fdwbridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The hostile tests point kt_fdw at a fake KT that answers with malformed
// responses and check that PostgreSQL survives: every statement ends with
// a result or an ERROR, the backend keeps working, the next statements get
// the fake's correct answers, and the server log shows no crash.

// hostileScenario is a statement sequence and the request whose response
// the fault replaces.
type hostileScenario struct {
	name   string
	target string   // ktReq.target of the faulted request
	steps  []string // SQL; {t} stands for the foreign table
}

var hostileScenarios = []hostileScenario{
	{"scan/cur_get", "cur_get", []string{"SELECT key, value FROM {t} ORDER BY key"}},
	{"scan/cur_jump", "cur_jump", []string{"SELECT key, value FROM {t} ORDER BY key"}},
	{"scan/cur_delete", "cur_delete", []string{"SELECT key, value FROM {t} ORDER BY key"}},
	{"get/status", "status", []string{"SELECT key, value FROM {t} WHERE key = 'a'"}},
	{"get", "get", []string{"SELECT key, value FROM {t} WHERE key = 'a'"}},
	{"get_bulk", "get_bulk", []string{"SELECT key, value FROM {t} WHERE key IN ('a', 'c', 'zz') ORDER BY key"}},
	{"insert", "add", []string{"INSERT INTO {t} VALUES ('n', 'v')"}},
	{"update", "replace", []string{"UPDATE {t} SET value = 'x' WHERE key = 'a'"}},
	{"delete", "remove", []string{"DELETE FROM {t} WHERE key = 'b'"}},
	{"delete-returning", "seize", []string{"DELETE FROM {t} WHERE key = 'c' RETURNING value"}},
	{"txn/begin", "play_script:ktfdwbegintransaction", []string{"BEGIN", "SELECT key, value FROM {t} WHERE key = 'a'", "INSERT INTO {t} VALUES ('n', 'v')", "COMMIT"}},
	{"txn/commit", "play_script:ktfdwcommit", []string{"BEGIN", "INSERT INTO {t} VALUES ('n', 'v')", "SELECT key, value FROM {t} ORDER BY key", "COMMIT"}},
	{"txn/abort", "play_script:ktfdwabort", []string{"BEGIN", "INSERT INTO {t} VALUES ('n', 'v')", "ROLLBACK"}},
	{"txn/scan", "cur_get", []string{"BEGIN", "UPDATE {t} SET value = 'x' WHERE key = 'a'", "SELECT key, value FROM {t} ORDER BY key", "COMMIT"}},
	{"txn/in-list", "get_bulk", []string{"BEGIN", "SELECT key, value FROM {t} WHERE key = ANY (ARRAY['b', 'a'])", "DELETE FROM {t} WHERE key = 'b'", "COMMIT"}},
}

// crashLog matches server log lines that mean a backend crashed.
var crashLog = regexp.MustCompile(`(?i)terminated by signal|server process .* was terminated|PANIC|TRAP:|terminating any other active server processes|all server processes terminated`)

type hostileEnv struct {
	t     *testing.T
	pg    *Postgres
	fake  *fakeKT
	table string // qualified name of the foreign table
	// conn is reused from case to case, so that state kt_fdw keeps in a
	// backend (its connection cache) meets every fault; a case that
	// fails closes it.
	conn *pgx.Conn
}

// hostileRun is the outcome of one case.
type hostileRun struct {
	fired   bool  // the fault replaced a response
	stmtErr error // the PostgreSQL error of the faulted statements, if any
}

// run runs sc with fault armed for sc.target and returns what happened,
// or an error when kt_fdw misbehaved.
func (e *hostileEnv) run(sc hostileScenario, fault ktFault, desync bool) (out hostileRun, err error) {
	logOff := e.logSize()
	ctx, cancel := context.WithTimeout(e.t.Context(), 15*time.Second)
	defer cancel()
	if e.conn == nil || e.conn.IsClosed() {
		if e.conn, err = e.pg.Connect(ctx); err != nil {
			return out, fmt.Errorf("connect: %w", err)
		}
	}
	conn := e.conn
	defer func() {
		if err != nil {
			_ = conn.Close(context.Background())
		}
	}()

	plan := e.fake.arm(sc.target, fault)
	for _, step := range sc.steps {
		sql := strings.ReplaceAll(step, "{t}", e.table)
		if _, err := hostileQuery(ctx, conn, sql); err != nil {
			if !isPgError(err) {
				return out, fmt.Errorf("%s: not a PostgreSQL error (backend lost or hung?): %w\nserver log:\n%s", sql, err, e.logSince(logOff))
			}
			out.stmtErr = err
			break
		}
	}
	e.fake.arm("", nil)
	out.fired = plan != nil && plan.fired.Load()
	if out.fired {
		// Let the fault finish writing, so that the checks below do not
		// race with its last bytes.
		select {
		case <-plan.done:
		case <-ctx.Done():
			return out, fmt.Errorf("the fault did not finish: %w", ctx.Err())
		}
	}

	// The backend must be usable: roll back whatever is left, then a
	// trivial query, then correct answers from the now well-behaved fake.
	if _, err := hostileQuery(ctx, conn, "ROLLBACK"); err != nil {
		return out, fmt.Errorf("ROLLBACK after the fault: %w\nserver log:\n%s", err, e.logSince(logOff))
	}
	if rows, err := hostileQuery(ctx, conn, "SELECT 1"); err != nil || len(rows) != 1 || rows[0] != "1" {
		return out, fmt.Errorf("SELECT 1 after the fault: %q, %v\nserver log:\n%s", rows, err, e.logSince(logOff))
	}
	for _, check := range []struct{ sql, want string }{
		{"SELECT key, value FROM {t} WHERE key = 'a'", "a|1"},
		{"SELECT key, value FROM {t} ORDER BY key", "a|1 b|2 c|3"},
	} {
		sql := strings.ReplaceAll(check.sql, "{t}", e.table)
		rows, err := hostileQuery(ctx, conn, sql)
		if err != nil && desync && isPgError(err) {
			desync = false
			hostileQuery(ctx, conn, "ROLLBACK")
			rows, err = hostileQuery(ctx, conn, sql)
		}
		if got := strings.Join(rows, " "); err != nil || got != check.want {
			return out, fmt.Errorf("after the fault, %s = %q, %v; want %q\nserver log:\n%s", sql, got, err, check.want, e.logSince(logOff))
		}
	}
	if l := e.logSince(logOff); crashLog.MatchString(l) {
		return out, fmt.Errorf("server log shows a crash:\n%s", l)
	}
	return out, nil
}

// hostileQuery runs sql with the simple protocol and returns its rows
// with columns joined by "|".
func hostileQuery(ctx context.Context, conn *pgx.Conn, sql string) ([]string, error) {
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return out, err
		}
		cols := make([]string, len(vals))
		for i, v := range vals {
			cols[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(cols, "|"))
	}
	return out, rows.Err()
}

func isPgError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

func (e *hostileEnv) close() {
	if e.conn != nil {
		_ = e.conn.Close(context.Background())
	}
}

func (e *hostileEnv) logSize() int64 {
	fi, err := os.Stat(e.pg.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the server log written after offset off, shortened.
func (e *hostileEnv) logSince(off int64) string {
	f, err := os.Open(e.pg.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return tail(string(data), 40)
}

// setupHostile creates a foreign server and table pointing at a new fake KT.
func setupHostile(t *testing.T) *hostileEnv {
	t.Helper()
	pg := sharedPostgres(t)
	if pg.Mode != ModeLocal {
		t.Skip("the fake KT listens on the loopback interface, which a container cannot reach")
	}
	installExtension(t, pg)
	conn := schemaConn(t, pg)
	ctx := testCtx(t, 30*time.Second)
	fake := startFakeKT(t)
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	server := "hostile_kt_" + strconv.Itoa(fake.port)
	for _, sql := range []string{
		"CREATE EXTENSION IF NOT EXISTS kt_fdw",
		"DROP SERVER IF EXISTS " + server + " CASCADE",
		fmt.Sprintf("CREATE SERVER %s FOREIGN DATA WRAPPER kt_fdw OPTIONS (host '%s', port '%d', timeout '1')", server, pg.KTHost(), fake.port),
		"CREATE USER MAPPING FOR PUBLIC SERVER " + server,
		"CREATE FOREIGN TABLE ft (key text, value text) SERVER " + server,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "DROP SERVER IF EXISTS "+server+" CASCADE"); err != nil {
			t.Errorf("drop server: %v", err)
		}
	})
	return &hostileEnv{t: t, pg: pg, fake: fake, table: pgx.Identifier{schema, "ft"}.Sanitize()}
}

// Fault builders.

// writeThen writes b instead of the valid response, then keeps serving the
// connection or closes it.
func writeThen(b []byte, keep bool) ktFault {
	return func(c net.Conn, _ []byte) bool {
		_, err := c.Write(b)
		return keep && err == nil
	}
}

// writeHang writes b, then neither answers nor closes until the client
// gives up (or 10 s pass).
func writeHang(b []byte) ktFault {
	return func(c net.Conn, _ []byte) bool {
		if _, err := c.Write(b); err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		return false
	}
}

// withValid builds the fault's bytes from the valid response.
func withValid(keep bool, f func(valid []byte) []byte) ktFault {
	return func(c net.Conn, valid []byte) bool {
		_, err := c.Write(f(valid))
		return keep && err == nil
	}
}

// splitResponse splits a response into its header (without the blank
// line) and body.
func splitResponse(resp []byte) (header string, body []byte) {
	h, b, _ := bytes.Cut(resp, []byte("\r\n\r\n"))
	return string(h), b
}

// replaceHeader rewrites the response's header lines: edit returns the new
// lines for each line (nil drops it).
func replaceHeader(resp []byte, edit func(line string) []string) []byte {
	h, body := splitResponse(resp)
	var out []string
	for i, l := range strings.Split(h, "\r\n") {
		if i == 0 {
			out = append(out, l)
			continue
		}
		out = append(out, edit(l)...)
	}
	return append([]byte(strings.Join(out, "\r\n")+"\r\n\r\n"), body...)
}

// setContentLength replaces the Content-Length header value.
func setContentLength(value string) func([]byte) []byte {
	return func(valid []byte) []byte {
		return replaceHeader(valid, func(l string) []string {
			if strings.HasPrefix(strings.ToLower(l), "content-length:") {
				return []string{"Content-Length: " + value}
			}
			return []string{l}
		})
	}
}

func rawResponse(status string, headers []string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString(status + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// tsvResponse is a 200 response with a raw body and colenc enc ("" for
// none).
func tsvResponse(status int, enc string, body string) []byte {
	ctype := "text/tab-separated-values"
	if enc != "" {
		ctype += "; colenc=" + enc
	}
	return rawResponse(fmt.Sprintf("HTTP/1.1 %d %s", status, statusText(status)),
		[]string{"Content-Type: " + ctype, "Content-Length: " + strconv.Itoa(len(body))}, []byte(body))
}

type hostileCase struct {
	name   string
	fault  ktFault
	only   []string // scenario names; nil = all
	mustOK bool     // every statement must succeed
	// mustFail names scenarios whose statements must end in an ERROR.
	mustFail []string
	// desync: the fault can leave the connection out of step with no way for
	// the client to tell (HTTP/1.1 has no request ids) when it arrives while
	// pipelined requests are in flight; a follow-up query may then fail with
	// an error, once, but never return wrong rows.
	desync bool
}

func hostileCases() []hostileCase {
	evil := ktResponse(200, 'B', "key", "EVIL", "value", "EVIL")
	// Faults that make kt_fdw wait for its timeout (1 s) run on few
	// scenarios.
	slow := []string{"get", "txn/commit"}
	// A server closing the connection discards the KT transaction that
	// holds these writes, so they must not look committed.
	closeInXact := []string{"insert", "update", "delete", "delete-returning"}
	return []hostileCase{
		{name: "truncated status line then close", fault: writeThen([]byte("HTTP/1.1 20"), false)},
		{name: "truncated status line then silence", fault: writeHang([]byte("HTTP/1.1 20")), only: []string{"insert"}},
		{name: "garbage status line then close", fault: writeThen([]byte("SSH-2.0-OpenSSH_9.6\r\n\r\n"), false)},
		{name: "garbage status line kept open", fault: writeThen([]byte("FOO BAR BAZ\r\nContent-Length: 0\r\n\r\n"), true)},
		{name: "short status line", fault: writeThen([]byte("HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), true)},
		{name: "non-numeric status", fault: writeThen([]byte("HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"), true)},
		{name: "overflowing status", fault: writeThen([]byte("HTTP/1.1 99999999999999999999 X\r\nContent-Length: 0\r\n\r\n"), true)},
		{name: "negative status", fault: writeThen([]byte("HTTP/1.1 -200 X\r\nContent-Length: 0\r\n\r\n"), true)},
		{name: "100 Continue first", fault: withValid(true, func(v []byte) []byte {
			return append([]byte("HTTP/1.1 100 Continue\r\n\r\n"), v...)
		})},
		{name: "missing Content-Length", fault: withValid(true, func(v []byte) []byte {
			return replaceHeader(v, func(l string) []string {
				if strings.HasPrefix(l, "Content-Length") {
					return nil
				}
				return []string{l}
			})
		})},
		{name: "empty Content-Length", fault: withValid(true, setContentLength(""))},
		{name: "negative Content-Length", fault: withValid(true, setContentLength("-5"))},
		{name: "overflowing Content-Length", fault: withValid(true, setContentLength("99999999999999999999"))},
		{name: "Content-Length wrapping at 2^32", fault: withValid(true, func(v []byte) []byte {
			_, body := splitResponse(v)
			return setContentLength(strconv.Itoa(1<<32 + len(body)))(v)
		})},
		{name: "Content-Length with junk", fault: withValid(true, func(v []byte) []byte {
			_, body := splitResponse(v)
			return setContentLength(strconv.Itoa(len(body)) + "abc")(v)
		})},
		{name: "conflicting Content-Length headers", fault: withValid(true, func(v []byte) []byte {
			return replaceHeader(v, func(l string) []string {
				if strings.HasPrefix(l, "Content-Length") {
					return []string{"Content-Length: 0", l}
				}
				return []string{l}
			})
		})},
		{name: "Content-Length larger than body then close", fault: withValid(false, func(v []byte) []byte {
			_, body := splitResponse(v)
			return setContentLength(strconv.Itoa(len(body) + 100))(v)
		})},
		{name: "Content-Length larger than body then silence", only: []string{"get_bulk"}, fault: func(c net.Conn, v []byte) bool {
			_, body := splitResponse(v)
			return writeHang(setContentLength(strconv.Itoa(len(body)+100))(v))(c, v)
		}},
		{name: "100 MB Content-Length then close", fault: withValid(false, setContentLength(strconv.Itoa(100<<20)))},
		{name: "2 GiB Content-Length", fault: withValid(true, setContentLength("2147483647"))},
		{name: "100 MB body", only: []string{"get"}, fault: func(c net.Conn, _ []byte) bool {
			body := bytes.Repeat([]byte{'x'}, 100<<20)
			copy(body, "value\t1\n")
			bufs := net.Buffers{[]byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"), body}
			_, _ = bufs.WriteTo(c)
			return false
		}},
		{name: "chunked encoding", fault: withValid(true, func(v []byte) []byte {
			h, body := splitResponse(v)
			h = regexp.MustCompile(`Content-Length: \d+`).ReplaceAllString(h, "Transfer-Encoding: chunked")
			return fmt.Appendf(nil, "%s\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", h, len(body), body)
		})},
		{name: "chunked encoding with Content-Length", fault: withValid(true, func(v []byte) []byte {
			h, body := splitResponse(v)
			chunked := fmt.Appendf(nil, "%x\r\n%s\r\n0\r\n\r\n", len(body), body)
			h = regexp.MustCompile(`Content-Length: \d+`).ReplaceAllString(h, "Transfer-Encoding: chunked\r\nContent-Length: "+strconv.Itoa(len(chunked)))
			return append([]byte(h+"\r\n\r\n"), chunked...)
		})},
		{name: "invalid base64 under colenc=B", fault: writeThen(tsvResponse(200, "B", "dmFsdWU=\t!!*@@\x01\x02\nk*e*y\t%%%\n"+"a2V5\t====\n"), true)},
		{name: "colenc=Q with bad escapes", fault: writeThen(tsvResponse(200, "Q", "key\t=ZZ=\nvalue\t=4=\r=G1=\n"), true)},
		{name: "colenc=U with bad escapes", fault: writeThen(tsvResponse(200, "U", "key\t%zz%\nvalue\t%4%%+\n"), true)},
		{name: "unknown colenc", fault: writeThen(tsvResponse(200, "X", "key\ta\nvalue\t1\n"), true)},
		{name: "empty colenc", fault: writeThen(rawResponse("HTTP/1.1 200 OK", []string{"Content-Type: text/tab-separated-values; colenc=", "Content-Length: 14"}, []byte("key\ta\nvalue\t1\n")), true)},
		{name: "missing value column", fault: writeThen(tsvResponse(200, "", "key\ta\nvalu\t1\n_a\n"), true)},
		{name: "lines without tabs", fault: writeThen(tsvResponse(200, "", "value1\nkey\nvalue\n\n\n\r\n"), true)},
		{name: "NUL bytes in body", fault: writeThen(tsvResponse(200, "", "key\ta\x00b\nvalue\t1\x002\n_a\x00\t\x00\n\x00\t\x00\n"), true)},
		{name: "NUL bytes in header", fault: writeThen(rawResponse("HTTP/1.1 200\x00OK", []string{"X-\x00: \x00", "Content-Length: 0"}, nil), true)},
		{name: "NUL and invalid UTF-8 in the error", fault: writeThen(tsvResponse(500, "", "ERROR\tbad\xff\xfe\x01\x00news\n"), true)},
		{name: "huge error message", fault: writeThen(tsvResponse(500, "", "ERROR\t"+strings.Repeat("\xffspam ", 200_000)+"\n"), true)},
		{name: "header line over 64 KiB", fault: withValid(true, func(v []byte) []byte {
			return replaceHeader(v, func(l string) []string {
				if strings.HasPrefix(l, "Server") {
					return []string{"X-Long: " + strings.Repeat("h", 100_000)}
				}
				return []string{l}
			})
		})},
		{name: "header line under 64 KiB", mustOK: true, fault: withValid(true, func(v []byte) []byte {
			return replaceHeader(v, func(l string) []string {
				if strings.HasPrefix(l, "Server") {
					return []string{"X-Long: " + strings.Repeat("h", 60_000)}
				}
				return []string{l}
			})
		})},
		{name: "bare LF line ends then close", fault: writeThen([]byte("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), false)},
		{name: "HTTP/1.0 without length then close", fault: withValid(false, func(v []byte) []byte {
			h, body := splitResponse(v)
			h = strings.Replace(h, "HTTP/1.1", "HTTP/1.0", 1)
			h = regexp.MustCompile(`\r\nContent-Length: \d+`).ReplaceAllString(h, "")
			return append([]byte(h+"\r\n\r\n"), body...)
		})},
		{name: "HTTP/1.0 with length then close", mustFail: closeInXact, fault: withValid(false, func(v []byte) []byte {
			return bytes.Replace(v, []byte("HTTP/1.1"), []byte("HTTP/1.0"), 1)
		})},
		{name: "Connection: close then close", mustFail: closeInXact, fault: withValid(false, func(v []byte) []byte {
			return replaceHeader(v, func(l string) []string {
				if strings.HasPrefix(l, "Server") {
					return []string{l, "Connection: close"}
				}
				return []string{l}
			})
		})},
		{name: "1-byte writes with delays", mustOK: true, fault: func(c net.Conn, v []byte) bool {
			for i := range v {
				if _, err := c.Write(v[i : i+1]); err != nil {
					return false
				}
				time.Sleep(300 * time.Microsecond)
			}
			return true
		}},
		{name: "never answers", only: slow, fault: writeHang(nil)},
		{name: "closes immediately", fault: func(net.Conn, []byte) bool { return false }},
		{name: "resets the connection", fault: func(c net.Conn, _ []byte) bool {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			return false
		}},
		{name: "header only then close", fault: withValid(false, func(v []byte) []byte {
			h, _ := splitResponse(v)
			return []byte(h + "\r\n\r\n")
		})},
		{name: "extra response pipelined", desync: true, fault: withValid(true, func(v []byte) []byte {
			return append(slices.Clone(v), evil...)
		})},
		{name: "extra response later", desync: true, fault: func(c net.Conn, v []byte) bool {
			if _, err := c.Write(v); err != nil {
				return false
			}
			time.Sleep(30 * time.Millisecond)
			_, err := c.Write(evil)
			return err == nil
		}},
		{name: "answer to another request", desync: true, fault: writeThen(evil, true)},
		{name: "status 200 with an error", fault: writeThen(tsvResponse(200, "", "ERROR\tsurprise\n"), true)},
		{name: "more fields than kt_fdw takes", only: []string{"get", "get_bulk"}, mustFail: []string{"get", "get_bulk"},
			fault: writeThen(tsvResponse(200, "", strings.Repeat("_k\tv\n", 150_000)), true)},
		{name: "many fields", fault: writeThen(tsvResponse(200, "", strings.Repeat("_k\tv\n", 20_000)+"key\ta\nvalue\t1\n"), true)},
	}
}

func TestHostileKTResponses(t *testing.T) {
	e := setupHostile(t)
	start := time.Now()
	defer e.close()

	// The fake itself must serve every scenario correctly.
	for _, sc := range hostileScenarios {
		r, err := e.run(sc, func(c net.Conn, v []byte) bool {
			_, err := c.Write(v)
			return err == nil
		}, false)
		if err != nil || r.stmtErr != nil || !r.fired {
			t.Fatalf("baseline %s: %v, statement error %v, target seen %v", sc.name, err, r.stmtErr, r.fired)
		}
	}
	t.Logf("baseline of %d scenarios took %v", len(hostileScenarios), time.Since(start).Round(time.Millisecond))

	filter := regexp.MustCompile(os.Getenv("KTFDW_HOSTILE_CASE"))
	runs, failures := 0, 0
	for _, hc := range hostileCases() {
		if !filter.MatchString(hc.name) {
			continue
		}
		for _, sc := range hostileScenarios {
			if hc.only != nil && !slices.Contains(hc.only, sc.name) {
				continue
			}
			caseStart := time.Now()
			r, err := e.run(sc, hc.fault, hc.desync)
			runs++
			switch {
			case err != nil:
				t.Errorf("%s / %s: %v", hc.name, sc.name, err)
			case !r.fired:
				t.Errorf("%s / %s: the fault never fired (statement error: %v)", hc.name, sc.name, r.stmtErr)
			case hc.mustOK && r.stmtErr != nil:
				t.Errorf("%s / %s: %v", hc.name, sc.name, r.stmtErr)
			case slices.Contains(hc.mustFail, sc.name) && r.stmtErr == nil:
				t.Errorf("%s / %s: the statement succeeded", hc.name, sc.name)
			default:
				if testing.Verbose() {
					t.Logf("%s / %s (%v): %v", hc.name, sc.name, time.Since(caseStart).Round(time.Millisecond), r.stmtErr)
				}
				continue
			}
			if failures++; failures >= 20 {
				t.Fatalf("giving up after %d failures", failures)
			}
		}
	}
	t.Logf("%d hand-made cases took %v", runs, time.Since(start).Round(time.Millisecond))
}

// interestingBytes are inserted by the mutator: protocol delimiters and
// the edges of digits and encodings.
var interestingBytes = []byte("\t\n\r\x00=%: 09-+BQU\xff\x80")

// mutate returns a copy of b with a few random edits.
func mutate(r *rand.Rand, b []byte) []byte {
	b = slices.Clone(b)
	for range 1 + r.IntN(4) {
		if len(b) == 0 {
			b = append(b, interestingBytes[r.IntN(len(interestingBytes))])
			continue
		}
		i := r.IntN(len(b))
		switch r.IntN(8) {
		case 0:
			b[i] ^= 1 << r.IntN(8)
		case 1:
			b[i] = interestingBytes[r.IntN(len(interestingBytes))]
		case 2:
			b = slices.Insert(b, i, interestingBytes[r.IntN(len(interestingBytes))])
		case 3:
			b = slices.Insert(b, i, byte(r.IntN(256)))
		case 4:
			b = slices.Delete(b, i, min(len(b), i+1+r.IntN(8)))
		case 5:
			j := min(len(b), i+1+r.IntN(32))
			k := r.IntN(len(b) + 1)
			b = slices.Insert(b, k, slices.Clone(b[i:j])...)
		case 6:
			b = b[:i]
		case 7:
			// replace a run of digits (a status or a length) by another number
			for i < len(b) && (b[i] < '0' || b[i] > '9') {
				i++
			}
			j := i
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			nums := []string{"0", "1", "-1", "200", "450", "2147483647", "2147483648", "4294967297", strconv.Itoa(r.IntN(300))}
			b = slices.Concat(b[:i], []byte(nums[r.IntN(len(nums))]), b[j:])
		}
	}
	return b
}

func TestHostileKTMutations(t *testing.T) {
	e := setupHostile(t)
	defer e.close()
	seed := uint64(1)
	if s := os.Getenv("KTFDW_HOSTILE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("KTFDW_HOSTILE_SEED: %v", err)
		}
	}
	const (
		maxIterations = 400
		budget        = 12 * time.Second
	)
	t.Logf("seed %d (rerun with KTFDW_HOSTILE_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6b74))
	start := time.Now()
	encs := []byte{0, 'B', 'U', 'Q'}
	failures, errs, iter := 0, 0, 0
	for ; iter < maxIterations && time.Since(start) < budget; iter++ {
		sc := hostileScenarios[rng.IntN(len(hostileScenarios))]
		e.fake.enc.Store(int32(encs[rng.IntN(len(encs))]))
		mseed := rng.Uint64()
		keep := rng.IntN(4) != 0
		var (
			mu      sync.Mutex
			sent    []byte
			validIn []byte
		)
		r, err := e.run(sc, func(c net.Conn, valid []byte) bool {
			m := mutate(rand.New(rand.NewPCG(mseed, 1)), valid)
			mu.Lock()
			sent, validIn = m, valid
			mu.Unlock()
			_, werr := c.Write(m)
			return keep && werr == nil
		}, true)
		if r.stmtErr != nil {
			errs++
		}
		if err != nil {
			mu.Lock()
			t.Errorf("iteration %d (seed %d), %s, keep-alive %v: %v\nvalid:   %q\nmutated: %q", iter, seed, sc.name, keep, err, validIn, sent)
			mu.Unlock()
			if failures++; failures >= 10 {
				t.Fatalf("giving up after %d failures", failures)
			}
		}
	}
	e.fake.enc.Store('B')
	t.Logf("%d mutated responses in %v, %d statements ended in an ERROR", iter, time.Since(start).Round(time.Millisecond), errs)
	if iter < 50 {
		t.Errorf("only %d iterations in %v", iter, budget)
	}
}
