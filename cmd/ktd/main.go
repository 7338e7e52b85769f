// Command ktd is a Kyoto Tycoon-compatible server on Pebble. It takes
// ktserver's command line:
//
//	ktd [-host str] [-port num] [-tout num] [-th num] [-log file] ... [db...]
//
// See the README for every flag.
package main

import (
	"os"

	"github.com/ktdproject/ktd/internal/proctune"
)

func main() {
	beforeServe = proctune.KeepSysmonAwake
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}
