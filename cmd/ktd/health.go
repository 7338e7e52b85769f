package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// healthUsage documents `ktd health`.
const healthUsage = `usage: ktd health [-timeout dur] [-tls] [-tlsca file] [-tlscert file -tlskey file] [host:port]
  Asks a running server for /rpc/void (default 127.0.0.1:1978) and exits 0 when it
  answers 200, 1 otherwise: a container's or a service manager's health check that
  needs no shell and no curl.
`

// healthMain runs `ktd health ...` and returns the exit status.
func healthMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ktd health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, healthUsage) }
	timeout := fs.Duration("timeout", 2*time.Second, "bound on the request")
	useTLS := fs.Bool("tls", false, "speak TLS")
	tlsCA := fs.String("tlsca", "", "CA bundle (PEM) that verifies the server (implies -tls)")
	tlsCert := fs.String("tlscert", "", "client certificate (PEM), with -tlskey (implies -tls)")
	tlsKey := fs.String("tlskey", "", "client certificate's key (PEM)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
		if err == nil {
			fmt.Fprint(stderr, healthUsage)
		}
		return 2
	}
	addr := "127.0.0.1:1978"
	if fs.NArg() == 1 {
		addr = withPort(fs.Arg(0))
	}
	tlsCfg, err := clientTLS(*useTLS, *tlsCA, *tlsCert, *tlsKey)
	if err != nil {
		fmt.Fprintf(stderr, "ktd health: %v\n", err)
		return 2
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	hc := &http.Client{Timeout: *timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/rpc/void", nil)
	if err != nil {
		fmt.Fprintf(stderr, "ktd health: %v\n", err)
		return 2
	}
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "ktd health: %s: %v\n", addr, err)
		return 1
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "ktd health: %s: void answered %s\n", addr, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "ktd health: %s: ok\n", addr)
	return 0
}
