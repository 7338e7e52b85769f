package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	// -h before the defaults: ktd parses them all (and checks that the directories they
	// name exist: stand-ins for the service's), then prints its help instead of starting.
	root := t.TempDir()
	for _, d := range []string{"/var/log/ktd", "/var/lib/ktd"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
		opts = strings.ReplaceAll(opts, d, filepath.Join(root, d))
	}
	args := append([]string{"-h"}, strings.Fields(opts)...)
	out, err := exec.Command(filepath.Join(dest, "usr/local/bin/ktd"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ktd rejects the default KTD_OPTS %q: %v\n%s", opts, err, out)
	}
}
