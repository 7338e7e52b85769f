// Command ktconform replays the golden recordings of a real Kyoto Tycoon
// 0.9.56 server against ktd started in-process, or against any
// KT-compatible server given with -addr, and prints one line per scenario
// (PASS / FAIL / DIFF / SKIP) and a summary. It exits 1 on any failure.
//
//	ktconform [-addr host:port] [-dir conformance/testdata/golden] [-run regexp]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"

	"github.com/ktdproject/ktd/conformance"
)

func main() {
	addr := flag.String("addr", "", "external server host:port (default: a fresh in-process ktd per scenario)")
	dir := flag.String("dir", "conformance/testdata/golden", "directory of .txtar scenarios")
	run := flag.String("run", "", "only scenarios whose name matches this regexp")
	flag.Parse()
	os.Exit(ktconform(*addr, *dir, *run))
}

// ktconform runs the suite and returns the exit code.
func ktconform(addr, dir, run string) int {
	re, err := regexp.Compile(run)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ktconform: -run:", err)
		return 2
	}
	all, err := conformance.LoadDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ktconform:", err)
		return 2
	}
	var scs []conformance.Scenario
	for _, sc := range all {
		if re.MatchString(sc.Name) {
			scs = append(scs, sc)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	counts := map[conformance.Status]int{}
	for _, r := range conformance.RunSuite(ctx, conformance.SuiteConfig{Addr: addr}, scs) {
		fmt.Println(r.Line())
		counts[r.Status]++
	}
	// Known, deliberate differences (DIFF) count as passed.
	fmt.Printf("%d passed, %d failed, %d skipped\n",
		counts[conformance.Pass]+counts[conformance.Differs], counts[conformance.Fail], counts[conformance.Skip])
	if counts[conformance.Fail] > 0 {
		return 1
	}
	return 0
}
