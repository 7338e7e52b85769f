package fdwbridge

import (
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

// TestStartPostgres_Container runs the pipeline against the container
// image of fdwbridge/Dockerfile. It needs a Docker daemon and skips,
// saying so, without one.
func TestStartPostgres_Container(t *testing.T) {
	if err := DockerAvailable(t.Context()); err != nil {
		t.Skipf("container mode needs Docker: %v", err)
	}
	if testing.Short() {
		t.Skip("builds a Docker image; skipped in -short mode")
	}
	ctx := testCtx(t, 15*time.Minute)
	pg, err := StartPostgres(ctx, PGOptions{Mode: ModeContainer, Logf: t.Logf, KeepOnFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(t.Failed()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if pg.Mode != ModeContainer || pg.KTHost() != containerKTHost {
		t.Errorf("Mode, KTHost() = %q, %q", pg.Mode, pg.KTHost())
	}

	// The container reaches the host through the Docker gateway, not the
	// loopback, so this ktd listens on every interface.
	cfg := ktserver.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := ktserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	port := ln.Addr().(*net.TCPAddr).Port

	conn, err := pg.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Log(version)
	if err := SetupPipeline(ctx, conn, KT{Host: pg.KTHost(), Port: port}); err != nil {
		t.Fatalf("%v\n%s", err, pg.LogTail(30))
	}
	if _, err := conn.Exec(ctx, `INSERT INTO rules (id, value) VALUES ('k', 'from-container')`); err != nil {
		t.Fatalf("%v\n%s", err, pg.LogTail(30))
	}
	kc := kttest.Dial(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if got := ktContents(t, kc, "0", "k"); got["k"] != "from-container" {
		t.Errorf("KT holds %v, want k=from-container", got)
	}
}
