package ktdcontainer_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/ktdcontainer"
	"github.com/ktdproject/ktd/ktdtest"
	"github.com/ktdproject/ktd/ktserver"
)

func TestMain(m *testing.M) {
	// Ryuk, testcontainers' reaper, is an image from a registry: none is reachable.
	// Every container here is terminated explicitly.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	// testcontainers takes this machine for a container and would reach the
	// published ports through its default gateway; they are on the loopback.
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	os.Exit(m.Run())
}

func need(t *testing.T) {
	t.Helper()
	if err := ktdcontainer.Available(t.Context()); err != nil {
		t.Skipf("needs a Docker engine and the ktd image (make image): %v", err)
	}
}

func start(t *testing.T, opts ...ktdcontainer.Option) *ktdcontainer.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ctr, err := ktdcontainer.Run(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if logs, err := ctr.Logs(context.Background()); err == nil {
				t.Logf("container log:\n%s", logs)
			}
		}
		if err := ctr.Terminate(context.Background()); err != nil {
			t.Errorf("Terminate: %v", err)
		}
	})
	return ctr
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The image serves KT's protocols on its published port, runs as a non-root user and
// keeps its database in the /data volume.
func TestRun(t *testing.T) {
	need(t)
	ctr := start(t)
	if code, _ := get(t, ctr.URL()+"/rpc/set?key=japan&value=tokyo"); code != 200 {
		t.Fatalf("set: %d", code)
	}
	if code, body := get(t, ctr.URL()+"/rpc/get?key=japan"); code != 200 || body != "value\ttokyo\n" {
		t.Fatalf("get: %d %q", code, body)
	}
	code, body := get(t, ctr.URL()+"/rpc/status")
	if code != 200 || !strings.Contains(body, "path\t/data/casket.kct") {
		t.Fatalf("status: %d %q", code, body)
	}
	logs, err := ctr.Logs(t.Context())
	if err != nil || !strings.Contains(logs, "starting ktd") {
		t.Fatalf("logs: %v %q", err, logs)
	}
}

// A ktd in a container as the master of an in-process replica (the PoP shape): the
// container's update log reaches the replica through the published port.
func TestMasterInContainer(t *testing.T) {
	need(t)
	ctr := start(t, ktdcontainer.WithArgs("-host", "0.0.0.0", "-port", "1978", "-ulog", "/data/ulog", "-sid", "1", "/data/casket.kct"))
	replica := ktdtest.New(t, ktdtest.WithConfig(func(c *ktserver.Config) {
		c.MasterAddr, c.SID = ctr.Addr(), 2
		c.RTSPath = filepath.Join(t.TempDir(), "replica.rts")
	}))
	resp, err := http.PostForm(ctr.URL()+"/rpc/set", url.Values{"key": {"rule"}, "value": {"on"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if v, ok := replica.Get(0, "rule"); ok && v == "on" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica never received the container master's write")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRun_NoImage(t *testing.T) {
	if err := ktdcontainer.Available(t.Context()); err != nil {
		t.Skipf("needs a Docker engine: %v", err)
	}
	_, err := ktdcontainer.Run(t.Context(), ktdcontainer.WithImage("ktd-no-such-image:none"))
	if err == nil || !strings.Contains(err.Error(), "no image") {
		t.Fatalf("Run of a missing image: %v", err)
	}
}
