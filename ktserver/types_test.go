package ktserver_test

import (
	"path/filepath"
	"testing"

	"github.com/ktdproject/ktd/ktserver"
)

// everyTypeConfig is a configuration with one database of each KC type: the on-memory
// ones and, in a directory of the test's own, the file ones.
func everyTypeConfig(t *testing.T) ktserver.Config {
	dir := t.TempDir()
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"%", "+", "*", ":", "-", filepath.Join(dir, "a.kct"), filepath.Join(dir, "a.kch"),
		filepath.Join(dir, "a.kcd"), filepath.Join(dir, "a.kcf")}
	return cfg
}
