package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
)

// ServerConfig returns the ktd configuration for a scenario's server
// command line: its DB arguments (nil for one ":" DB) and its -rts file,
// each relative path resolved in the scratch directory dir, as the real
// server ran in an empty directory of its own; a -scr file is taken from
// the scenario's own directory.
func ServerConfig(sc Scenario, dir string) ktserver.Config {
	cfg := ktserver.DefaultConfig()
	for _, arg := range sc.Options.DBs {
		cfg.DBs = append(cfg.DBs, scratchPath(arg, dir))
	}
	if sc.Options.RTS != "" {
		cfg.RTSPath = filepath.Join(dir, sc.Options.RTS)
	}
	if sc.Options.Script != "" {
		cfg.ScriptPath = filepath.Join(sc.Dir, sc.Options.Script)
	}
	return cfg
}

// scratchPath places a file database argument with a relative path inside
// dir, so that scenarios naming the same file ("casket.kct") never share
// it. On-memory databases ("+", "other.kcpt") and absolute paths are
// returned unchanged; the database's name (what DB= selects) stays the
// same either way.
func scratchPath(arg, dir string) string {
	spec, err := store.ParseSpec(arg)
	if err != nil || spec.InMemory || filepath.IsAbs(spec.Path) {
		return arg // an unparsable argument fails in ktserver.New, as given
	}
	return dir + string(filepath.Separator) + arg
}

// StartInProcess starts a fresh ktd for sc on 127.0.0.1 (any free port),
// with dir as its scratch directory. The returned stop function closes the
// server and waits for Serve to return.
func StartInProcess(sc Scenario, dir string) (Target, func() error, error) {
	srv, err := ktserver.New(ServerConfig(sc, dir))
	if err != nil {
		return Target{}, nil, fmt.Errorf("start ktd: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return Target{}, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	stop := func() error {
		err := srv.Close()
		ln.Close()
		select {
		case serr := <-done:
			if err == nil && !errors.Is(serr, ktserver.ErrServerClosed) {
				err = serr
			}
		case <-time.After(5 * time.Second):
			if err == nil {
				err = fmt.Errorf("ktd: Serve did not return within 5 s of Close")
			}
		}
		return err
	}
	return Target{Addr: ln.Addr().String()}, stop, nil
}

// RunInProcess replays sc against its own fresh in-process ktd whose
// scratch directory is a new directory under tmp ("" for the system
// default), removed afterwards.
func RunInProcess(ctx context.Context, sc Scenario, tmp string) Result {
	if sc.Skip != "" {
		return Result{Name: sc.Name, Status: Skip, Reason: sc.Skip}
	}
	dir, err := os.MkdirTemp(tmp, "ktconform-")
	if err != nil {
		return Result{Name: sc.Name, Status: Fail, Reason: err.Error()}
	}
	defer os.RemoveAll(dir)
	target, stop, err := StartInProcess(sc, dir)
	if err != nil {
		return Result{Name: sc.Name, Status: Fail, Reason: err.Error()}
	}
	res := Run(ctx, target, sc)
	if err := stop(); err != nil && res.Status != Fail {
		res.Status, res.Reason, res.Detail = Fail, "stop ktd: "+err.Error(), ""
	}
	return res
}

// External returns a target for a server that is already running at addr
// (a real KT or a ktd started elsewhere, with DBs "+ other.kcpt" to match
// the recordings). Before each scenario it is reset by clearing DB 0 and
// DB 1 (a server with one DB may answer 400 to the latter).
func External(addr string) Target {
	return Target{
		Addr:   addr,
		Shared: true,
		Reset: func(ctx context.Context) error {
			if err := clearDB(ctx, addr, "0", false); err != nil {
				return err
			}
			return clearDB(ctx, addr, "1", true)
		},
	}
}

// clearDB sends /rpc/clear?DB=db on a connection of its own and closes it.
func clearDB(ctx context.Context, addr, db string, mayNotExist bool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/rpc/clear?DB="+db, nil)
	if err != nil {
		return err
	}
	req.Close = true
	client := http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case mayNotExist && resp.StatusCode == http.StatusBadRequest:
		return nil
	}
	return fmt.Errorf("clear DB=%s: %s %q", db, resp.Status, body)
}
