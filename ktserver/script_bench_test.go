package ktserver_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ktdproject/ktd/harness/kttest"
)

// The small procedure of the play_script benchmark: one get, its value in the output.
const benchScript = `kt = __kyototycoon__
function get(inmap, outmap)
  local v = kt.db:get(inmap.key)
  if v == nil then return kt.RVELOGIC end
  outmap.value = v
end
`

// benchRequests sends the same HTTP request over keep-alive connections (p per CPU,
// each waiting for its answer) to a server started in-process (on "*", 1000 keys of
// 100 bytes, the script loaded) and reports requests per second; every response must
// be 200.
func benchRequests(b *testing.B, p int, request string) {
	cfg := memConfig()
	cfg.DBs = []string{"*"}
	cfg.ScriptPath = filepath.Join(b.TempDir(), "bench.lua")
	if err := os.WriteFile(cfg.ScriptPath, []byte(benchScript), 0o644); err != nil {
		b.Fatal(err)
	}
	_, addr := kttest.StartServer(b, cfg)
	c := kttest.Dial(b, addr)
	value := strings.Repeat("v", 100)
	for i := range 1000 {
		c.RPC("set", "key", "k"+strconv.Itoa(i), "value", value)
	}
	b.SetParallelism(p)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		for pb.Next() {
			if _, err := io.WriteString(nc, request); err != nil {
				b.Error(err)
				return
			}
			resp, err := kttest.ReadResponse(br, false)
			if err != nil || resp.Code != 200 {
				b.Errorf("response %v: %v", resp, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

const (
	benchGet       = "GET /rpc/get?key=k123 HTTP/1.1\r\nHost: x\r\n\r\n"
	benchScriptGet = "GET /rpc/play_script?name=get&_key=k123 HTTP/1.1\r\nHost: x\r\n\r\n"
)

// benchSet is what wrk's set load sends (bench/kt.lua): a TSV body of a key and a
// 100-byte value.
var benchSet = func() string {
	body := "key\tk123\nvalue\t" + strings.Repeat("v", 100) + "\n"
	return "POST /rpc/set HTTP/1.1\r\nHost: x\r\nContent-Type: text/tab-separated-values\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}()

// BenchmarkPlayScriptGet is play_script of a one-get procedure; BenchmarkRPCGet is
// ktd's own get of the same record, for comparison in the same run.
func BenchmarkPlayScriptGet(b *testing.B) {
	for _, p := range []int{1, 8} {
		b.Run(fmt.Sprintf("p=%d", p), func(b *testing.B) { benchRequests(b, p, benchScriptGet) })
	}
}

func BenchmarkRPCGet(b *testing.B) {
	for _, p := range []int{1, 8} {
		b.Run(fmt.Sprintf("p=%d", p), func(b *testing.B) { benchRequests(b, p, benchGet) })
	}
}

// BenchmarkRPCSet is an RPC set as the wrk load sends it; its allocations per
// operation include the benchmark client's own (a constant few).
func BenchmarkRPCSet(b *testing.B) {
	for _, p := range []int{1, 8} {
		b.Run(fmt.Sprintf("p=%d", p), func(b *testing.B) { benchRequests(b, p, benchSet) })
	}
}
