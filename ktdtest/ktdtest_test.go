package ktdtest_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/ktdtest"
)

// rpc calls a KT RPC procedure over HTTP and returns the TSV body.
func rpc(t *testing.T, srv *ktdtest.Server, proc string, params url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(srv.URL()+"/rpc/"+proc, params)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestNew_OnMemory(t *testing.T) {
	srv := ktdtest.New(t)
	if code, body := rpc(t, srv, "set", url.Values{"key": {"japan"}, "value": {"tokyo"}}); code != 200 {
		t.Fatalf("set: %d %q", code, body)
	}
	if v, ok := srv.Get(0, "japan"); !ok || v != "tokyo" {
		t.Fatalf("Get = %q, %v", v, ok)
	}
	if err := srv.Set(0, "osaka", "kyoto"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL() + "/osaka") // REST
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "kyoto" {
		t.Fatalf("REST get = %q", b)
	}
	if n := srv.Count(0); n != 2 {
		t.Fatalf("Count = %d", n)
	}
	if srv.Count(1) != -1 {
		t.Fatal("Count of a missing database")
	}
	if srv.Host() != "127.0.0.1" || srv.Port() == 0 || !strings.HasSuffix(srv.Addr(), ":"+strconv.Itoa(srv.Port())) {
		t.Fatalf("address %q host %q port %d", srv.Addr(), srv.Host(), srv.Port())
	}
}

func TestNew_FileDatabases(t *testing.T) {
	srv := ktdtest.New(t, ktdtest.WithDBs("casket.kct", "*"))
	if _, err := os.Stat(filepath.Join(srv.Dir(), "casket.kct")); err != nil {
		t.Fatalf("file database not in Dir: %v", err)
	}
	if code, _ := rpc(t, srv, "set", url.Values{"key": {"k"}, "value": {"v"}, "DB": {"1"}}); code != 200 {
		t.Fatal("set in DB 1")
	}
	if _, ok := srv.Get(0, "k"); ok {
		t.Fatal("record in the wrong database")
	}
	if v, ok := srv.Get(1, "k"); !ok || v != "v" {
		t.Fatalf("Get(1) = %q, %v", v, ok)
	}
}

// A server restarted on the same directory finds its data; Start without WithDir
// removes its temporary directory on Close.
func TestStart_DirAndRestart(t *testing.T) {
	dir := t.TempDir()
	a, err := ktdtest.Start(ktdtest.WithDir(dir), ktdtest.WithDBs("casket.kct"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Set(0, "kept", "yes"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b := ktdtest.New(t, ktdtest.WithDir(dir), ktdtest.WithDBs("casket.kct"))
	if v, ok := b.Get(0, "kept"); !ok || v != "yes" {
		t.Fatalf("after restart: %q, %v", v, ok)
	}

	c, err := ktdtest.Start(ktdtest.WithDBs("casket.kch"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := c.Dir()
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temporary directory left behind: %v", err)
	}
}

func TestMasterReplica(t *testing.T) {
	master := ktdtest.New(t, ktdtest.WithULog(1), ktdtest.WithDBs("master.kct"))
	if err := master.Set(0, "before", "1"); err != nil { // copied by the bootstrap
		t.Fatal(err)
	}
	replica := ktdtest.New(t, ktdtest.WithMaster(master, 2), ktdtest.WithDBs("replica.kct"))
	if code, body := rpc(t, master, "set", url.Values{"key": {"after"}, "value": {"2"}}); code != 200 {
		t.Fatalf("set: %d %q", code, body)
	}
	replica.WaitSynced(t, master, 30*time.Second)
	for k, want := range map[string]string{"before": "1", "after": "2"} {
		if v, ok := replica.Get(0, k); !ok || v != want {
			t.Fatalf("replica %s = %q, %v", k, v, ok)
		}
	}
	// The stream keeps flowing after the first sync.
	if code, _ := rpc(t, master, "remove", url.Values{"key": {"before"}}); code != 200 {
		t.Fatal("remove")
	}
	replica.WaitSynced(t, master, 30*time.Second)
	if _, ok := replica.Get(0, "before"); ok {
		t.Fatal("removal not replicated")
	}
}

func TestStart_BadDatabase(t *testing.T) {
	if _, err := ktdtest.Start(ktdtest.WithDBs("casket.unknown-type")); err == nil {
		t.Fatal("a database argument ktd does not know was accepted")
	}
}

// BenchmarkNew is the cost of starting and closing an on-memory server for a test.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		s, err := ktdtest.Start()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
