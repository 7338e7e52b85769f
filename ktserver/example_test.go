package ktserver_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/ktdproject/ktd/ktserver"
)

// A KT-compatible server inside a Go program: New, Serve, Close.
func Example() {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"*"} // on-memory; "casket.kct" for a file database
	srv, err := ktserver.New(cfg)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	base := "http://" + ln.Addr().String()
	req, _ := http.NewRequest(http.MethodPut, base+"/osaka", strings.NewReader("kyoto"))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		fmt.Println("PUT", resp.StatusCode)
	}
	resp, err := http.Get(base + "/rpc/get?key=osaka")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s", body)
	// Output:
	// PUT 201
	// value	kyoto
}
