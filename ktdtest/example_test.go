package ktdtest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/ktdproject/ktd/ktdtest"
)

// A test of code that speaks to Kyoto Tycoon gets a server of its own in one line.
func ExampleNew() {
	testMyClient := func(t *testing.T) {
		srv := ktdtest.New(t) // closed when the test ends
		resp, err := http.PostForm(srv.URL()+"/rpc/set", url.Values{"key": {"japan"}, "value": {"tokyo"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if v, _ := srv.Get(0, "japan"); v != "tokyo" {
			t.Errorf("japan = %q", v)
		}
	}
	_ = testMyClient // run by go test as func TestMyClient(t *testing.T)
}

// Start and Close run a server outside a test.
func ExampleStart() {
	srv, err := ktdtest.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	http.PostForm(srv.URL()+"/rpc/set", url.Values{"key": {"japan"}, "value": {"tokyo"}})
	resp, err := http.Get(srv.URL() + "/rpc/get?key=japan")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	// Output: 200 value	tokyo
}

// A master and a replica in one process: write to the master, wait, read the replica.
// In a test: ktdtest.New(t, ...) and replica.WaitSynced(t, master, timeout).
func ExampleServer_AwaitSync() {
	master, _ := ktdtest.Start(ktdtest.WithULog(1))
	defer master.Close()
	replica, _ := ktdtest.Start(ktdtest.WithMaster(master, 2))
	defer replica.Close()

	master.Set(0, "rule", "on")
	if err := replica.AwaitSync(master, 10*time.Second); err != nil {
		panic(err)
	}
	v, _ := replica.Get(0, "rule")
	fmt.Println(v)
	// Output: on
}
