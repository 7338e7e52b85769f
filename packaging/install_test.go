package packaging

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// install runs `make install` from the repository root into a scratch DESTDIR.
func install(t *testing.T, prefix string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX="+prefix)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	return dest
}

func TestMakeInstall(t *testing.T) {
	dest := install(t, "/opt/ktd")
	bin := filepath.Join(dest, "opt/ktd/bin/ktd")
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "ktd ") {
		t.Fatalf("installed ktd version: %v %q", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "opt/ktd/lib/systemd/system/ktd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/opt/ktd/bin/ktd $KTD_OPTS") || strings.Contains(string(unit), "@BINDIR@") {
		t.Fatalf("unit's ExecStart not set to the installed binary:\n%s", unit)
	}
	for _, f := range []string{"etc/default/ktd", "etc/logrotate.d/ktd"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}

	// An operator's edited defaults survive a reinstall.
	defaults := filepath.Join(dest, "etc/default/ktd")
	if err := os.WriteFile(defaults, []byte("KTD_OPTS=-port 2000 /var/lib/ktd/x.kct\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/opt/ktd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(defaults); string(b) != "KTD_OPTS=-port 2000 /var/lib/ktd/x.kct\n" {
		t.Fatalf("reinstall overwrote /etc/default/ktd: %q", b)
	}
}

// The unit passes systemd's own checks, and its default command line is one ktd accepts.
func TestUnitVerifies(t *testing.T) {
	dest := install(t, "/usr/local")
	unitPath := filepath.Join(dest, "usr/local/lib/systemd/system/ktd.service")
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify resolves ExecStart: point it at the binary in DESTDIR.
		unit, _ := os.ReadFile(unitPath)
		bin := filepath.Join(dest, "usr/local/bin/ktd")
		local := filepath.Join(t.TempDir(), "ktd.service")
		os.WriteFile(local, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/ktd", bin)), 0o644)
		out, err := exec.Command(sa, "verify", local).CombinedOutput()
		if err != nil || strings.Contains(string(out), "ktd.service:") {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze not installed: the unit's syntax is not verified")
	}

	b, err := os.ReadFile(filepath.Join(dest, "etc/default/ktd"))
	if err != nil {
		t.Fatal(err)
	}
	var opts string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "KTD_OPTS="); ok {
			opts = v
		}
	}
	if opts == "" {
		t.Fatal("no KTD_OPTS in the defaults")
	}
	// The installed ktd starts with the default KTD_OPTS (its directories and port
	// replaced by stand-ins for the service's), serves, and stops cleanly on SIGTERM.
	root := t.TempDir()
	for _, d := range []string{"/var/log/ktd", "/var/lib/ktd"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
		opts = strings.ReplaceAll(opts, d, filepath.Join(root, d))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	if !strings.Contains(opts, "-port 1978") {
		t.Fatalf("default KTD_OPTS without -port 1978: %q", opts)
	}
	opts = strings.Replace(opts, "-port 1978", "-port "+port, 1)
	cmd := exec.Command(filepath.Join(dest, "usr/local/bin/ktd"), strings.Fields(opts)...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("ktd with the default KTD_OPTS %q exited: %v\n%s", opts, err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("ktd with the default KTD_OPTS does not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("ktd did not stop cleanly: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/ktd/casket.kct")); err != nil {
		t.Fatalf("the database is not under the state directory: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "var/log/ktd/ktd.log")); !strings.Contains(string(b), "starting ktd") {
		t.Fatalf("the log is not in the logs directory: %q", b)
	}
}
