package ktdexamples

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/ktdtest"
	"github.com/ktdproject/ktd/ktserver"
)

// The HTTP RPC interface, as any KT client library speaks it (TSV bodies).
func TestRPC(t *testing.T) {
	srv := ktdtest.New(t)
	post := func(proc string, body string) string {
		t.Helper()
		resp, err := http.Post(srv.URL()+"/rpc/"+proc, "text/tab-separated-values", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", proc, resp.StatusCode, b)
		}
		return string(b)
	}
	post("set", "key\tjapan\nvalue\ttokyo\n")
	post("increment", "key\tvisits\nnum\t3\n")
	if got := post("get", "key\tjapan\n"); got != "value\ttokyo\n" {
		t.Fatalf("get = %q", got)
	}
	if got := post("increment", "key\tvisits\nnum\t4\n"); got != "num\t7\n" {
		t.Fatalf("increment = %q", got)
	}
}

// KT's binary protocol: set_bulk (0xB8) and get_bulk (0xBA) frames on a raw socket.
func TestBinaryProtocol(t *testing.T) {
	srv := ktdtest.New(t, ktdtest.WithDBs("casket.kct"))
	conn, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)

	var req bytes.Buffer
	req.WriteByte(0xB8)
	binary.Write(&req, binary.BigEndian, uint32(0)) // flags
	binary.Write(&req, binary.BigEndian, uint32(3)) // records
	for i := range 3 {
		key, value := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		binary.Write(&req, binary.BigEndian, uint16(0)) // database
		binary.Write(&req, binary.BigEndian, uint32(len(key)))
		binary.Write(&req, binary.BigEndian, uint32(len(value)))
		binary.Write(&req, binary.BigEndian, int64(1<<62)) // xt: far future
		req.WriteString(key + value)
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	var head struct {
		Magic byte
		Hits  uint32
	}
	if err := binary.Read(br, binary.BigEndian, &head); err != nil || head.Magic != 0xB8 || head.Hits != 3 {
		t.Fatalf("set_bulk answer %+v, %v", head, err)
	}

	req.Reset()
	req.WriteByte(0xBA)
	binary.Write(&req, binary.BigEndian, uint32(0))
	binary.Write(&req, binary.BigEndian, uint32(2))
	for _, key := range []string{"k1", "missing"} {
		binary.Write(&req, binary.BigEndian, uint16(0))
		binary.Write(&req, binary.BigEndian, uint32(len(key)))
		req.WriteString(key)
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := binary.Read(br, binary.BigEndian, &head); err != nil || head.Magic != 0xBA || head.Hits != 1 {
		t.Fatalf("get_bulk answer %+v, %v", head, err)
	}
	var rec struct {
		DB         uint16
		KSiz, VSiz uint32
		XT         int64
	}
	if err := binary.Read(br, binary.BigEndian, &rec); err != nil {
		t.Fatal(err)
	}
	kv := make([]byte, rec.KSiz+rec.VSiz)
	if _, err := io.ReadFull(br, kv); err != nil {
		t.Fatal(err)
	}
	if string(kv) != "k1v1" {
		t.Fatalf("get_bulk record %q", kv)
	}
	if v, ok := srv.Get(0, "k2"); !ok || v != "v2" {
		t.Fatalf("k2 = %q, %v", v, ok)
	}
}

// Replication between two in-process servers.
func TestMasterReplica(t *testing.T) {
	master := ktdtest.New(t, ktdtest.WithULog(1), ktdtest.WithDBs("master.kct"))
	replica := ktdtest.New(t, ktdtest.WithMaster(master, 2), ktdtest.WithDBs("replica.kct"))
	resp, err := http.PostForm(master.URL()+"/rpc/set", url.Values{"key": {"rule"}, "value": {"on"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	replica.WaitSynced(t, master, 30*time.Second)
	if v, ok := replica.Get(0, "rule"); !ok || v != "on" {
		t.Fatalf("replica: %q, %v", v, ok)
	}
}

// ktserver directly, with a configuration of one's own.
func TestKTServer(t *testing.T) {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"%"}
	cfg.MaxValueSize = 16
	srv, err := ktserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != ktserver.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/rpc/set?key=k&value=" + strings.Repeat("x", 17))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("a value over MaxValueSize was stored")
	}
}
