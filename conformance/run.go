package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// knownDifferences lists scenarios (by base name, see Scenario.BaseName)
// where ktd deliberately differs from KT 0.9.56, with a one-line reason.
// Such a scenario is still replayed; a mismatch is reported as "differs"
// with the reason instead of failing.
//
// The rpc-report entry only covers the report lines in reportTolerated:
// any other mismatch in the report still fails.
var knownDifferences = map[string]string{
	"rpc-report": "conf_kc_version, conf_kc_features and conf_kt_features name the Kyoto Cabinet build; ktd is not linked to Kyoto Cabinet",
	"lua-dbinfo": "db:size(), tostring(db) and db:status() show Kyoto Cabinet internals (record sizes, the status fields of a KC cache DB); ktd reports its own, as status does over RPC",
}

// KnownDifference returns the reason a scenario is listed as a deliberate
// difference, or "".
func KnownDifference(sc Scenario) string { return knownDifferences[sc.BaseName()] }

// Timing of a replay.
const (
	// responseTimeout bounds the wait for the expected bytes of a step.
	responseTimeout = 3 * time.Second
	// grace is the wait for unexpected extra bytes after the expected
	// ones arrived.
	grace = 50 * time.Millisecond
	// silenceGrace is the wait when the recording shows no response.
	silenceGrace = 150 * time.Millisecond
	// closeTimeout bounds the wait for the server to close the connection
	// where the recording shows -- eof --.
	closeTimeout = time.Second
	dialTimeout  = 5 * time.Second
)

// Target is a server to replay a scenario against.
type Target struct {
	// Addr is the server's host:port.
	Addr string
	// Reset, if not nil, is called before the scenario to bring the
	// server to the state of a fresh one as far as it can.
	Reset func(ctx context.Context) error
	// Shared says the server was not started for this scenario (an
	// external server): scenarios needing particular server flags are
	// skipped, and report counters are compared only by shape.
	Shared bool
}

// Status is the outcome of a scenario.
type Status int

// Outcomes of a scenario.
const (
	Pass    Status = iota // every step matched
	Fail                  // a step did not match
	Differs               // a known, deliberate difference (see KnownDifference)
	Skip                  // not replayed against this target
)

// String returns "PASS", "FAIL", "DIFF" or "SKIP", as ktconform prints it.
func (s Status) String() string {
	return [...]string{"PASS", "FAIL", "DIFF", "SKIP"}[s]
}

// Result is the outcome of replaying one scenario.
type Result struct {
	// Name is the scenario's name.
	Name string
	// Status is the outcome.
	Status Status
	// Reason is one line: why it failed, differs or was skipped.
	Reason string
	// Detail is the full failure description (possibly several lines),
	// also set for Differs so the actual difference can be logged.
	Detail string
}

// Line formats the result as "PASS name" / "FAIL name: reason" etc.
func (r Result) Line() string {
	if r.Reason == "" {
		return r.Status.String() + " " + r.Name
	}
	return r.Status.String() + " " + r.Name + ": " + r.Reason
}

// Run replays sc against target and compares every response. It never
// panics on a misbehaving server; all problems end up in the Result.
func Run(ctx context.Context, target Target, sc Scenario) Result {
	res := Result{Name: sc.Name}
	if sc.Skip != "" {
		res.Status, res.Reason = Skip, sc.Skip
		return res
	}
	if need := sc.Options.NeedsConfig(); target.Shared && need != "" {
		res.Status, res.Reason = Skip, need
		return res
	}
	if target.Reset != nil {
		if err := target.Reset(ctx); err != nil {
			res.Status, res.Reason = Fail, "reset target: "+err.Error()
			return res
		}
	}
	hard, soft := replay(ctx, target, sc)
	known := KnownDifference(sc)
	switch {
	case len(hard) > 0 && known != "" && !sc.Options.Variable:
		res.Status, res.Reason, res.Detail = Differs, known, strings.Join(hard, "\n")
	case len(hard) > 0:
		res.Status, res.Reason, res.Detail = Fail, firstLine(hard[0]), strings.Join(hard, "\n")
	case len(soft) > 0 && known != "":
		res.Status, res.Reason, res.Detail = Differs, known, strings.Join(soft, "\n")
	case len(soft) > 0:
		res.Status, res.Reason, res.Detail = Fail, firstLine(soft[0]), strings.Join(soft, "\n")
	default:
		res.Status = Pass
	}
	return res
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// replay runs the steps on one connection (a new one after reconnect or
// eof) and returns the failures, stopping at the first failing step.
func replay(ctx context.Context, target Target, sc Scenario) (hard, soft []string) {
	_, port, _ := net.SplitHostPort(target.Addr)
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for i, st := range sc.Steps {
		if conn != nil && st.Reconnect {
			conn.Close()
			conn = nil
		}
		if conn == nil {
			d := net.Dialer{Timeout: dialTimeout}
			c, err := d.DialContext(ctx, "tcp", target.Addr)
			if err != nil {
				return []string{fmt.Sprintf("step %d: dial: %v", i+1, err)}, nil
			}
			conn = c
		}
		complete := func(got []byte) bool { return len(got) >= len(st.Response) }
		if sc.Options.Variable {
			complete = httpComplete
		}
		ex := exchange(ctx, conn, st, complete)
		h, s := check(ex, st, sc.Options.Variable, !target.Shared, port)
		prefix := fmt.Sprintf("step %d (request %s): ", i+1, describeRequest(st))
		for _, m := range h {
			hard = append(hard, prefix+m)
		}
		for _, m := range s {
			soft = append(soft, prefix+m)
		}
		if len(h) > 0 {
			return hard, soft
		}
		if st.EOF {
			conn.Close()
			conn = nil
		}
	}
	return hard, soft
}

// describeRequest shows the start of a request for failure messages.
func describeRequest(st Step) string {
	const n = 48
	b := st.Request
	if st.RequestHex {
		return fmt.Sprintf("% x", b[:min(len(b), 16)])
	}
	s := Escape(b[:min(len(b), n)])
	if len(b) > n {
		s += "…"
	}
	return `"` + s + `"`
}

// closeState is how the connection stood after a step.
type closeState int

const (
	open     closeState = iota // still open after the grace period
	closed                     // the server closed it (FIN, read returned EOF)
	reset                      // the server reset it (RST)
	timedOut                   // the expected bytes did not all arrive in time
	broken                     // another read error
)

// exchangeResult is what one step observed.
type exchangeResult struct {
	got      []byte
	state    closeState
	err      error // the read error behind broken / timedOut
	writeErr error
}

// exchange writes the request in one write and reads the response: until
// the expected number of bytes arrived, then for a grace period (or up to
// the step's idle time) to catch extra bytes or a close, then, if the
// recording shows eof, up to closeTimeout for the close.
//
// complete says when the expected response has arrived.
func exchange(ctx context.Context, conn net.Conn, st Step, complete func([]byte) bool) exchangeResult {
	var ex exchangeResult
	start := time.Now()
	conn.SetWriteDeadline(start.Add(responseTimeout))
	_, ex.writeErr = conn.Write(st.Request)

	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	deadline := start.Add(max(responseTimeout, st.Idle+2*time.Second))
	if ex.readUntil(conn, deadline, complete) {
		return ex
	}
	if ex.state == timedOut {
		return ex
	}
	g := grace
	if len(st.Response) == 0 {
		g = silenceGrace
	}
	quiet := time.Now().Add(g)
	if idleEnd := start.Add(st.Idle); idleEnd.After(quiet) {
		quiet = idleEnd
	}
	if ex.readUntil(conn, quiet, nil) || !st.EOF {
		if ex.state == timedOut {
			ex.state, ex.err = open, nil
		}
		return ex
	}
	ex.readUntil(conn, time.Now().Add(closeTimeout), nil)
	if ex.state == timedOut {
		ex.state, ex.err = open, nil
	}
	return ex
}

// readUntil appends to ex.got until done(ex.got) (done nil: until the
// deadline) or the connection ends. It returns true when the connection
// ended (ex.state set); on deadline ex.state is timedOut.
func (ex *exchangeResult) readUntil(conn net.Conn, deadline time.Time, done func([]byte) bool) bool {
	buf := make([]byte, 64<<10)
	conn.SetReadDeadline(deadline)
	for done == nil || !done(ex.got) {
		n, err := conn.Read(buf)
		ex.got = append(ex.got, buf[:n]...)
		if err == nil {
			continue
		}
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF):
			ex.state = closed
		case errors.Is(err, syscall.ECONNRESET):
			ex.state = reset
		case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
			ex.state, ex.err = timedOut, err
			return false
		default:
			ex.state, ex.err = broken, err
		}
		return true
	}
	return false
}

// httpComplete reports whether b holds a complete HTTP response: a head
// and as many body bytes as its Content-Length says.
func httpComplete(b []byte) bool {
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return false
	}
	_, cl := normalizeHead(head, "", "")
	return len(body) >= cl
}

// check compares what a step observed with the recording.
func check(ex exchangeResult, st Step, variable, exact bool, port string) (hard, soft []string) {
	if variable {
		hard, soft = compareReport(ex.got, st.Response, port, exact)
	} else if d := Diff(Normalize(ex.got, st.Response, port), st.Response, st.ResponseHex); d != "" {
		hard = append(hard, "response differs: "+d)
	}
	switch {
	case ex.state == timedOut:
		hard = append(hard, fmt.Sprintf("timed out waiting for the response (%d of %d bytes)", len(ex.got), len(st.Response)))
	case ex.state == broken:
		hard = append(hard, fmt.Sprintf("read: %v", ex.err))
	case st.EOF && ex.state == open:
		hard = append(hard, fmt.Sprintf("the recording shows the server closing the connection here; it stayed open for %v", closeTimeout))
	case st.EOF && ex.state == reset:
		hard = append(hard, "the server reset the connection (RST); the recording shows a clean close (FIN)")
	case !st.EOF && ex.state != open:
		hard = append(hard, "the server closed the connection; the recording shows it staying open")
	}
	if len(hard) > 0 && ex.writeErr != nil {
		hard = append(hard, fmt.Sprintf("(writing the request failed: %v)", ex.writeErr))
	}
	return hard, soft
}
