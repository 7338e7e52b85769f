package ktserver_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/ktserver"
)

// rawConn dials addr with a test deadline.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return nc
}

// expectClosed reads until EOF (or a reset) and fails if the server keeps
// the connection open past within.
func expectClosed(t *testing.T, nc net.Conn, within time.Duration) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
}

// stillServes checks that a fresh client is answered promptly.
func stillServes(t *testing.T, addr string) {
	t.Helper()
	c := kttest.Dial(t, addr)
	defer c.Conn().Close()
	start := time.Now()
	if r := c.RPC("set", "key", "other", "value", "fine"); r.Code != 200 {
		t.Fatalf("other client: set = %d %q", r.Code, r.Body)
	}
	if r := c.RPC("get", "key", "other"); r.Code != 200 || r.TSV()["value"] != "fine" {
		t.Fatalf("other client: get = %d %q", r.Code, r.Body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("other client waited %v", d)
	}
}

func TestLimitHTTPBodyTooLarge(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.MaxBodySize = 1 << 20
	srv, addr := kttest.StartServer(t, cfg)

	for _, head := range []string{
		"Content-Length: 4294967296\r\n",               // 4 GiB claimed, nothing sent
		"Content-Length: 1048577\r\n",                  // one byte over
		"Transfer-Encoding: chunked\r\n\r\n100001\r\n", // one chunk over
	} {
		c := kttest.Dial(t, addr)
		r := c.Do("POST /rpc/set HTTP/1.1\r\n" + head + "\r\n")
		want := "413 Request Entity Too Large (request entity too large)\n"
		if r.Code != 413 || r.Body != want || r.Header["connection"] != "close" || r.Header["content-type"] != "text/plain" {
			t.Fatalf("%q: got %d %v %q", head, r.Code, r.Header, r.Body)
		}
		expectClosed(t, c.Conn(), 5*time.Second)
		stillServes(t, addr)
	}
	// Exactly at the limit is fine.
	c := kttest.Dial(t, addr)
	val := strings.Repeat("v", 1<<20-len("key=k&value="))
	body := "key=k&value=" + val
	r := c.Do(fmt.Sprintf("POST /rpc/set HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if r.Code != 200 {
		t.Fatalf("body at the limit: %d %q", r.Code, r.Body)
	}
	if st := srv.LimitStats(); st.Oversized != 3 || st.InflightBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLimitKeyValueRecords(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.MaxKeySize, cfg.MaxValueSize, cfg.MaxRecords = 16, 32, 2
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	k16, v32 := strings.Repeat("k", 16), strings.Repeat("v", 32)
	for _, tc := range []struct {
		params []string
		code   int
		err    string
	}{
		{[]string{"key", k16, "value", v32}, 200, ""},
		{[]string{"key", k16 + "k", "value", "x"}, 400, "the key is too large"},
		{[]string{"key", "k", "value", v32 + "v"}, 400, "the value is too large"},
	} {
		r := c.RPC("set", tc.params...)
		if r.Code != tc.code || r.TSV()["ERROR"] != tc.err {
			t.Fatalf("set %.20q: %d %q", tc.params, r.Code, r.Body)
		}
	}
	if r := c.RPC("set_bulk", "_a", "1", "_b", "2"); r.Code != 200 {
		t.Fatalf("set_bulk 2: %d %q", r.Code, r.Body)
	}
	if r := c.RPC("set_bulk", "_a", "1", "_b", "2", "_c", "3"); r.Code != 400 || r.TSV()["ERROR"] != "too many records" {
		t.Fatalf("set_bulk 3: %d %q", r.Code, r.Body)
	}
	if r := c.RPC("get_bulk", "_"+k16+"k", ""); r.Code != 400 || r.TSV()["ERROR"] != "the key is too large" {
		t.Fatalf("get_bulk long key: %d %q", r.Code, r.Body)
	}
	// REST: 400 with the reason in X-Kt-Error; the connection stays open.
	r := c.Do(fmt.Sprintf("PUT /k HTTP/1.1\r\nContent-Length: 33\r\n\r\n%s", v32+"v"))
	if r.Code != 400 || r.Header["x-kt-error"] != "the value is too large" {
		t.Fatalf("REST PUT: %d %v", r.Code, r.Header)
	}
	r = c.Do("GET /" + k16 + "kk HTTP/1.1\r\n\r\n")
	if r.Code != 400 || r.Header["x-kt-error"] != "the key is too large" {
		t.Fatalf("REST GET: %d %v", r.Code, r.Header)
	}
	if r := c.RPC("get", "key", k16); r.Code != 200 || r.TSV()["value"] != v32 {
		t.Fatalf("get after refusals: %d %q", r.Code, r.Body)
	}
}

// binaryRefused sends frame and expects 0xBF (or nothing when noReply)
// followed by the connection's close.
func binaryRefused(t *testing.T, addr string, frame []byte, noReply bool) {
	t.Helper()
	nc := rawConn(t, addr)
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("frame % x...: connection not closed (got % x)", frame[:min(len(frame), 16)], got)
	}
	want := []byte{ktproto.MagicError}
	if noReply {
		want = nil
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("frame % x...: got % x, want % x", frame[:min(len(frame), 16)], got, want)
	}
}

func setBulkHeader(flags, rnum uint32) []byte {
	b := []byte{ktproto.MagicSetBulk}
	b = binary.BigEndian.AppendUint32(b, flags)
	return binary.BigEndian.AppendUint32(b, rnum)
}

func setBulkRec(b []byte, ksiz, vsiz uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, ksiz)
	b = binary.BigEndian.AppendUint32(b, vsiz)
	b = binary.BigEndian.AppendUint64(b, 0)
	return append(b, data...)
}

func TestLimitBinaryFrames(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.MaxKeySize, cfg.MaxValueSize, cfg.MaxBodySize, cfg.MaxRecords = 16, 1024, 2048, 4
	srv, addr := kttest.StartServer(t, cfg)

	ok := ktproto.AppendSetBulkRequest(nil, 0, []ktproto.BulkRecord{{Key: []byte("a"), Value: []byte("1")}})
	for _, tc := range []struct {
		name    string
		frame   []byte
		noReply bool
	}{
		{"key over limit", setBulkRec(setBulkHeader(0, 1), 17, 1, nil), false},
		{"value over limit", setBulkRec(setBulkHeader(0, 1), 1, 1025, nil), false},
		{"value claims 4 GiB", setBulkRec(setBulkHeader(0, 1), 1, 0xFFFFFFFF, nil), false},
		{"too many records", setBulkHeader(0, 5), false},
		{"rnum 2^32-1", setBulkHeader(0, 0xFFFFFFFF), false},
		{"total over body limit", setBulkRec(setBulkRec(setBulkRec(setBulkHeader(0, 3),
			1, 1000, append([]byte("a"), make([]byte, 1000)...)),
			1, 1000, append([]byte("b"), make([]byte, 1000)...)),
			1, 1000, nil), false},
		{"no-reply: closed silently", setBulkRec(setBulkHeader(ktproto.FlagNoReply, 1), 17, 1, nil), true},
		{"remove_bulk key over limit", []byte{ktproto.MagicRemoveBulk, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 17}, false},
		{"get_bulk rnum over limit", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(
			[]byte{ktproto.MagicGetBulk}, 0), 1000), false},
		{"play_script name over limit", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(
			[]byte{ktproto.MagicPlayScript}, 0), 17), 0), false},
		{"play_script arg value over limit", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(append(
			binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(
				[]byte{ktproto.MagicPlayScript}, 0), 4), 1), "echo"...), 1), 1025), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			binaryRefused(t, addr, tc.frame, tc.noReply)
		})
	}
	// Other clients are unaffected: a valid frame is answered.
	nc := rawConn(t, addr)
	nc.Write(ok)
	got := make([]byte, 5)
	if _, err := io.ReadFull(nc, got); err != nil || got[0] != ktproto.MagicSetBulk || binary.BigEndian.Uint32(got[1:]) != 1 {
		t.Fatalf("valid set_bulk: % x %v", got, err)
	}
	if st := srv.LimitStats(); st.Oversized < 9 || st.InflightBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// heapAlloc returns the live heap after a GC.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestLimitClaimedSizesCostNothing: many connections claiming 256 MiB
// bodies and values (the largest the protocols allow) but sending a few
// bytes make the server allocate about what arrived, not what was claimed.
func TestLimitClaimedSizesCostNothing(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.Timeout = 3 * time.Second
	srv, addr := kttest.StartServer(t, cfg)
	before := heapAlloc()
	const n = 16
	var conns []net.Conn
	for i := range n {
		nc := rawConn(t, addr)
		if i%2 == 0 {
			fmt.Fprintf(nc, "POST /rpc/set HTTP/1.1\r\nContent-Length: %d\r\n\r\nkey=k&value=", ktproto.MaxBody)
		} else {
			nc.Write(setBulkRec(setBulkHeader(0, 1), 1, ktproto.MaxBinarySize, []byte("k0123456789")))
		}
		conns = append(conns, nc)
	}
	time.Sleep(300 * time.Millisecond)
	stillServes(t, addr)
	after := heapAlloc()
	st := srv.LimitStats()
	// 16 claims of 256 MiB = 4 GiB; each costs at most one 1 MiB step.
	if grow := int64(after) - int64(before); grow > 32<<20 {
		t.Fatalf("heap grew by %d bytes for %d claims of 256 MiB", grow, n)
	}
	if st.InflightBytes > n*(1<<20+64<<10) {
		t.Fatalf("in-flight bytes %d", st.InflightBytes)
	}
	// The claims are cut off by -tout and their budget returned.
	for _, nc := range conns {
		expectClosed(t, nc, 6*time.Second)
	}
	kttest.WaitFor(t, 5*time.Second, "budget released", func() bool { return srv.LimitStats().InflightBytes == 0 })
}

// TestLimitInflightBudget: a request that does not fit the global budget
// waits up to a second for room, then is refused with 503 and closed;
// requests without bodies and small ones go on.
func TestLimitInflightBudget(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.MaxInflightBytes = 4 << 20
	srv, addr := kttest.StartServer(t, cfg)

	// A: a 3.5 MiB body, all but its last byte sent: it holds 3.5 MiB.
	const bigLen = 7 << 19
	prefix := "key=a&value="
	bodyA := prefix + strings.Repeat("a", bigLen-len(prefix))
	a := rawConn(t, addr)
	fmt.Fprintf(a, "POST /rpc/set HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", bigLen)
	a.Write([]byte(bodyA[:bigLen-1]))
	kttest.WaitFor(t, 5*time.Second, "A's reservation", func() bool { return srv.LimitStats().InflightBytes == bigLen })

	// B: a 2 MiB body does not fit: 503 after about a second, then close.
	b := kttest.Dial(t, addr)
	bodyB := "key=b&value=" + strings.Repeat("b", 2<<20)
	start := time.Now()
	r := b.Do(fmt.Sprintf("POST /rpc/set HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(bodyB), bodyB))
	want := "503 Service Unavailable (too many request bytes in flight)\n"
	if r.Code != 503 || r.Body != want || r.Header["connection"] != "close" {
		t.Fatalf("B: %d %v %q", r.Code, r.Header, r.Body)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("B refused after %v, want about 1s", d)
	}
	expectClosed(t, b.Conn(), 5*time.Second)

	// Small requests still fit; body-less ones need no budget.
	stillServes(t, addr)

	// C waits for room: A completes while C is waiting, so C succeeds.
	c := kttest.Dial(t, addr)
	done := make(chan *kttest.Response, 1)
	go func() {
		bodyC := "key=c&value=" + strings.Repeat("c", 2<<20)
		c.Conn().SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c.Conn(), "POST /rpc/set HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(bodyC), bodyC)
		resp, _ := kttest.ReadResponse(c.Reader(), false)
		done <- resp
	}()
	time.Sleep(200 * time.Millisecond)
	a.Write([]byte(bodyA[bigLen-1:]))
	ra, err := kttest.ReadResponse(bufio.NewReader(a), false)
	if err != nil || ra.Code != 200 {
		t.Fatalf("A: %v %v", ra, err)
	}
	if rc := <-done; rc == nil || rc.Code != 200 {
		t.Fatalf("C: %v", rc)
	}
	st := srv.LimitStats()
	if st.Busy != 1 || st.PeakInflightBytes > 4<<20 {
		t.Fatalf("stats %+v", st)
	}
	kttest.WaitFor(t, 5*time.Second, "budget released", func() bool { return srv.LimitStats().InflightBytes == 0 })
}

// TestLimitSlowLoris: a client trickling a request one byte at a time is
// cut off once -tout has passed since its first byte, not -tout after its
// last byte.
func TestLimitSlowLoris(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.Timeout = time.Second
	_, addr := kttest.StartServer(t, cfg)
	for _, req := range []string{
		"GET /rpc/void HTTP/1.1\r\nX-Slow: " + strings.Repeat("x", 100),
		string(setBulkRec(setBulkHeader(0, 1), 1, 100, []byte("k"+strings.Repeat("v", 100)))),
	} {
		nc := rawConn(t, addr)
		start := time.Now()
		closed := make(chan time.Duration, 1)
		go func() {
			io.Copy(io.Discard, nc)
			closed <- time.Since(start)
		}()
		go func() {
			for i := 0; i < len(req); i++ {
				if _, err := nc.Write([]byte{req[i]}); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		stillServes(t, addr)
		select {
		case d := <-closed:
			if d < 900*time.Millisecond || d > 3*time.Second {
				t.Fatalf("slow client closed after %v, want about 1s", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("slow client never cut off")
		}
	}
}

// TestLimitNonReader: a client that pipelines requests for large values
// and never reads the answers is closed by the write deadline; others are
// served meanwhile.
func TestLimitNonReader(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.Timeout = time.Second
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	val := strings.Repeat("x", 1<<20)
	if r := c.Do(fmt.Sprintf("PUT /big HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s", len(val), val)); r.Code != 201 {
		t.Fatalf("PUT: %d", r.Code)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	start := time.Now()
	writeErr := make(chan error, 1)
	go func() {
		req := []byte(strings.Repeat("GET /big HTTP/1.1\r\n\r\n", 64))
		for {
			nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write(req); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	// The others are served while the non-reader is stuck.
	for time.Since(start) < 1500*time.Millisecond {
		stillServes(t, addr)
	}
	kttest.WaitFor(t, 5*time.Second, "non-reader closed", func() bool {
		return c.RPC("report").TSV()["serv_conn_count"] == "1"
	})
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("non-reader closed after %v", d)
	}
	select {
	case err := <-writeErr:
		t.Logf("non-reader's writes failed: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("non-reader's connection still accepts writes")
	}
}

func TestLimitIdleTimeout(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	srv, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	// Active connections stay open across many idle timeouts.
	for range 5 {
		if r := c.RPC("void"); r.Code != 200 {
			t.Fatal(r.Code)
		}
		time.Sleep(150 * time.Millisecond)
	}
	start := time.Now()
	expectClosed(t, c.Conn(), 3*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle connection closed after %v", d)
	}
	if st := srv.LimitStats(); st.IdleClosed != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Default: idle connections are kept, as in KT.
	_, addr2 := kttest.StartServer(t, ktserver.DefaultConfig())
	c2 := kttest.Dial(t, addr2)
	c2.RPC("void")
	time.Sleep(time.Second)
	if r := c2.RPC("void"); r.Code != 200 {
		t.Fatal(r.Code)
	}
}
