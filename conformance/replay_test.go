package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer replays one scenario's recorded responses: for each step it
// reads exactly the recorded request bytes, writes the (possibly altered)
// recorded response, and closes the connection where the recording says
// eof. It proves that Run accepts a server that behaves exactly like the
// recording and rejects one that does not.
type fakeServer struct {
	sc Scenario
	ln net.Listener
	// respond returns the bytes to send for step i (default: recorded).
	respond func(i int, st Step, port string) []byte
	// closeAfter overrides whether to close after step i (default: EOF).
	closeAfter func(i int, st Step) bool
	// rst closes with SO_LINGER 0 (a reset) instead of FIN.
	rst  bool
	done chan error
}

func startFake(t *testing.T, sc Scenario, configure func(*fakeServer)) Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{sc: sc, ln: ln, done: make(chan error, 1)}
	if configure != nil {
		configure(f)
	}
	go func() { f.done <- f.serve() }()
	t.Cleanup(func() {
		ln.Close()
		<-f.done
	})
	return Target{Addr: ln.Addr().String()}
}

func (f *fakeServer) serve() error {
	_, port, _ := net.SplitHostPort(f.ln.Addr().String())
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for i, st := range f.sc.Steps {
		if conn != nil && st.Reconnect {
			io.Copy(io.Discard, conn) // the client closes first
			conn.Close()
			conn = nil
		}
		if conn == nil {
			c, err := f.ln.Accept()
			if err != nil {
				return err
			}
			conn = c
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(conn, make([]byte, len(st.Request))); err != nil {
			return fmt.Errorf("step %d: read request: %w", i+1, err)
		}
		resp := st.Response
		if f.respond != nil {
			resp = f.respond(i, st, port)
		}
		if _, err := conn.Write(resp); err != nil {
			return fmt.Errorf("step %d: write: %w", i+1, err)
		}
		closeNow := st.EOF
		if f.closeAfter != nil {
			closeNow = f.closeAfter(i, st)
		}
		if closeNow {
			if f.rst {
				conn.(*net.TCPConn).SetLinger(0)
			}
			conn.Close()
			conn = nil
		}
	}
	if conn != nil {
		io.Copy(io.Discard, conn)
	}
	return nil
}

// TestRun_ReplayServerPasses replays every golden recording and vector
// against a fake server that answers with the recorded bytes, once
// verbatim and once with a real Date, another Server name and its own port
// in Location: all must pass, proving decoding, timing, eof/reconnect
// handling and normalisation.
func TestRun_ReplayServerPasses(t *testing.T) {
	var scs []Scenario
	for _, dir := range []string{goldenDir, vectorsDir} {
		for _, sc := range loadDir(t, dir) {
			if sc.Skip == "" {
				scs = append(scs, sc)
			}
		}
	}
	for _, mode := range []string{"verbatim", "volatile-headers"} {
		for _, sc := range scs {
			t.Run(mode+"/"+sc.Name, func(t *testing.T) {
				t.Parallel()
				target := startFake(t, sc, func(f *fakeServer) {
					if mode == "volatile-headers" {
						f.respond = func(_ int, st Step, port string) []byte { return realHeaders(st.Response, port) }
					}
				})
				res := Run(t.Context(), target, sc)
				if res.Status != Pass {
					t.Fatalf("%s\n%s", res.Line(), res.Detail)
				}
			})
		}
	}
}

// realHeaders turns a recorded response into what a live server on port
// would send: a real Date, its own Server name, its port in Location.
func realHeaders(resp []byte, port string) []byte {
	r := strings.NewReplacer(
		"Date: <date>\r\n", "Date: Wed, 25 Nov 2026 22:18:00 GMT\r\n",
		"Server: KyotoTycoon/0.9.56\r\n", "Server: ktd/0.1\r\n",
		"Location: http://localhost:23978", "Location: http://localhost:"+port,
	)
	return []byte(r.Replace(string(resp)))
}

func scenario(t *testing.T, name string) Scenario {
	t.Helper()
	for _, dir := range []string{goldenDir, vectorsDir} {
		for _, sc := range loadDir(t, dir) {
			if sc.Name == name {
				return sc
			}
		}
	}
	t.Fatalf("no scenario %s", name)
	return Scenario{}
}

// TestRun_DetectsDifferences checks that each kind of deviation fails with
// a message that points at it.
func TestRun_DetectsDifferences(t *testing.T) {
	tests := []struct {
		name      string
		scenario  string
		configure func(*fakeServer)
		want      string // substring of Detail
	}{
		{"changed byte", "http/rpc-set-query", func(f *fakeServer) {
			f.respond = func(i int, st Step, _ string) []byte {
				if i == 1 {
					return bytes.Replace(st.Response, []byte("tokyo"), []byte("tokyO"), 1)
				}
				return st.Response
			}
		}, "first difference at byte"},
		{"changed binary byte", "binary/bin-get-bulk", func(f *fakeServer) {
			f.respond = func(i int, st Step, _ string) []byte {
				b := bytes.Clone(st.Response)
				if i == 1 {
					b[len(b)-1] ^= 1
				}
				return b
			}
		}, "\n  want: "},
		{"extra bytes", "http/rpc-void-get", func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte { return append(bytes.Clone(st.Response), "junk"...) }
		}, "got 125 bytes, want 121"},
		{"bytes where silence is recorded", "binary/bin-set-bulk-noreply", func(f *fakeServer) {
			f.respond = func(i int, st Step, _ string) []byte {
				if i == 0 {
					return []byte{0xb8, 0, 0, 0, 1}
				}
				return st.Response
			}
		}, "b8 00 00 00 01"},
		{"missing bytes", "http/rpc-void-get", func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte { return st.Response[:len(st.Response)-2] }
		}, "timed out waiting for the response (119 of 121 bytes)"},
		{"unexpected close", "http/http-11-keepalive-explicit", func(f *fakeServer) {
			f.closeAfter = func(int, Step) bool { return true }
		}, "the server closed the connection; the recording shows it staying open"},
		{"no close where eof is recorded", "http/http-11-close", func(f *fakeServer) {
			f.closeAfter = func(int, Step) bool { return false }
		}, "it stayed open"},
		{"reset instead of close", "binary/bin-unknown-magic", func(f *fakeServer) { f.rst = true }, "reset the connection (RST)"},
		{"content-length changed", "http/rpc-get-missing", func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte {
				return bytes.Replace(st.Response, []byte("Content-Length: 34"), []byte("Content-Length: 35"), 1)
			}
		}, "Content-Length: 35"},
		{"header name case", "http/rpc-void-get", func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte {
				return bytes.Replace(st.Response, []byte("Date: <date>"), []byte("date: <date>"), 1)
			}
		}, "first difference at byte"},
		{"other port in Location", "http/rest-put", func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte {
				return bytes.Replace(st.Response, []byte(":23978/"), []byte(":1978/"), 1)
			}
		}, "1978"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc := scenario(t, tt.scenario)
			res := Run(t.Context(), startFake(t, sc, tt.configure), sc)
			if res.Status != Fail {
				t.Fatalf("status %v, want FAIL", res.Status)
			}
			if !strings.Contains(res.Detail, tt.want) {
				t.Errorf("detail does not mention %q:\n%s", tt.want, res.Detail)
			}
			t.Log(res.Line())
		})
	}
}

// TestRun_Report checks the structural comparison of the report recording.
func TestRun_Report(t *testing.T) {
	sc := scenario(t, "http-variable/rpc-report")
	replace := func(old, new string) func(*fakeServer) {
		return func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte { return withReportLine(st.Response, old, new) }
		}
	}
	tests := []struct {
		name      string
		configure func(*fakeServer)
		shared    bool
		want      Status
		detail    string
	}{
		{"verbatim", nil, false, Pass, ""},
		{"volatile values", func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte {
				b := withReportLine(st.Response, "serv_current_time\t1795646814.252979", "serv_current_time\t1800000000.000001")
				b = withReportLine(b, "serv_proc_id\t3966", "serv_proc_id\t1234567")
				return withReportLine(b, "sys_mem_rss\t5615616", "sys_mem_rss\t99")
			}
		}, false, Pass, ""},
		{"kc version", replace("conf_kc_version\t1.2.79 (16.14)", "conf_kc_version\tnone"), false, Differs, "conf_kc_version"},
		{"counter", replace("cnt_get\t0", "cnt_get\t1"), false, Fail, `cnt_get is "1"`},
		{"counter on a shared server", replace("cnt_get\t0", "cnt_get\t17"), true, Pass, ""},
		{"bad time shape", replace("serv_running_term\t0.017862", "serv_running_term\t0.01"), false, Fail, "not of the form"},
		{"missing line", replace("sys_mem_cached\t87080960\n", ""), false, Fail, `name "sys_mem_free", want "sys_mem_cached"`},
		{"wrong Content-Length", func(f *fakeServer) {
			f.respond = func(_ int, st Step, _ string) []byte {
				return bytes.Replace(st.Response, []byte("cnt_get\t0"), []byte("cnt_get\t00"), 1)
			}
		}, true, Fail, "Content-Length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			target := startFake(t, sc, tt.configure)
			target.Shared = tt.shared
			res := Run(t.Context(), target, sc)
			if res.Status != tt.want || !strings.Contains(res.Detail, tt.detail) {
				t.Fatalf("got %s\n%s\nwant %v with %q", res.Line(), res.Detail, tt.want, tt.detail)
			}
		})
	}
}

// withReportLine replaces a report line and fixes Content-Length.
func withReportLine(resp []byte, old, new string) []byte {
	head, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	body = strings.Replace(body, old, new, 1)
	lines := strings.Split(head, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Content-Length: ") {
			lines[i] = fmt.Sprintf("Content-Length: %d", len(body))
		}
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n" + body)
}

func TestRun_SkipsAndKnownDifferences(t *testing.T) {
	rep := Scenario{Name: "replication/own-slave-ts0", Skip: skipReplication}
	if r := Run(t.Context(), Target{}, rep); r.Status != Skip || r.Reason != skipReplication {
		t.Errorf("replication: %s", r.Line())
	}
	rts := scenario(t, "http/rpc-tune-replication-ts")
	if r := Run(t.Context(), Target{Shared: true}, rts); r.Status != Skip || !strings.Contains(r.Reason, "-rts slave.rts") {
		t.Errorf("rts on a shared target: %s", r.Line())
	}

	sc := scenario(t, "http/rpc-void-get")
	knownDifferences[sc.BaseName()] = "test reason"
	defer delete(knownDifferences, sc.BaseName())
	target := startFake(t, sc, func(f *fakeServer) {
		f.respond = func(_ int, st Step, _ string) []byte {
			return bytes.Replace(st.Response, []byte("OK"), []byte("Ok"), 1)
		}
	})
	if r := Run(t.Context(), target, sc); r.Status != Differs || r.Reason != "test reason" || r.Detail == "" {
		t.Errorf("known difference: %s\n%s", r.Line(), r.Detail)
	}
}

func TestRun_ResetFailure(t *testing.T) {
	sc := scenario(t, "http/rpc-void-get")
	target := Target{Addr: "127.0.0.1:1", Reset: func(context.Context) error { return errors.New("boom") }}
	if r := Run(t.Context(), target, sc); r.Status != Fail || !strings.Contains(r.Reason, "boom") {
		t.Errorf("got %s", r.Line())
	}
}

func TestNormalize(t *testing.T) {
	want := []byte("HTTP/1.1 201 Created\r\nServer: KyotoTycoon/0.9.56\r\nDate: <date>\r\nContent-Length: 0\r\nLocation: http://localhost:23978japan\r\n\r\n")
	got := []byte("HTTP/1.1 201 Created\r\nServer: ktd\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nContent-Length: 0\r\nLocation: http://localhost:4444japan\r\n\r\n")
	if d := Diff(Normalize(got, want, "4444"), want, false); d != "" {
		t.Error(d)
	}
	// A body that looks like headers is left alone.
	body := "HTTP/1.1 200 OK\r\nContent-Length: 32\r\n\r\nx\r\nDate: today\r\nServer: me\r\n\r\n12"
	if got := string(Normalize([]byte(body+body), nil, "1")); got != body+body {
		t.Errorf("Normalize changed a body: %q", got)
	}
	// Binary bytes around an HTTP response survive.
	mixed := append([]byte{0xb8, 0, 0, 0, 1}, got...)
	if n := Normalize(mixed, want, "4444"); !bytes.Equal(n[5:], want) || !bytes.Equal(n[:5], mixed[:5]) {
		t.Errorf("mixed: %q", n)
	}
}

// TestExternal_Reset checks that an external target is cleared (DB 0 and
// DB 1, each on a connection of its own) before a scenario.
func TestExternal_Reset(t *testing.T) {
	lines := make(chan string, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			n, _ := c.Read(buf)
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			lines <- line
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()
	if err := External(ln.Addr().String()).Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := "GET /rpc/clear?DB=0 HTTP/1.1|GET /rpc/clear?DB=1 HTTP/1.1"
	if s := <-lines + "|" + <-lines; s != want {
		t.Errorf("requests %q, want %q", s, want)
	}
}
