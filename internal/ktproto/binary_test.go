package ktproto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"testing"
)

func TestVarnum(t *testing.T) {
	for _, tc := range []struct {
		v   uint64
		hex string
	}{
		{0, "00"}, {127, "7f"}, {128, "8100"}, {200, "8148"}, {16383, "ff7f"}, {16384, "818000"},
		{1<<63 - 1, "ffffffffffffffff7f"}, {1<<64 - 1, "81ffffffffffffffff7f"},
	} {
		b := AppendVarnum(nil, tc.v)
		if hex.EncodeToString(b) != tc.hex {
			t.Errorf("AppendVarnum(%d) = %x, want %s", tc.v, b, tc.hex)
		}
		v, n := ReadVarnum(append(b, 0xAA))
		if v != tc.v || n != len(b) {
			t.Errorf("ReadVarnum(%x) = %d, %d", b, v, n)
		}
	}
	if _, n := ReadVarnum([]byte{0x81, 0x80}); n != 0 {
		t.Errorf("truncated varnum accepted")
	}
	if _, n := ReadVarnum(nil); n != 0 {
		t.Errorf("empty varnum accepted")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBinaryVectors(t *testing.T) {
	// §16 T12/T13.
	set := mustHex(t, "B80000000000000001000000000005000000057FFFFFFFFFFFFFFF6A6170616E746F6B796F")
	recs := []BulkRecord{{DBIdx: 0, Key: []byte("japan"), Value: []byte("tokyo"), XT: 1<<63 - 1}}
	if got := AppendSetBulkRequest(nil, 0, recs); !bytes.Equal(got, set) {
		t.Errorf("set_bulk req %x", got)
	}
	flags, got, err := ReadSetBulk(bufio.NewReader(bytes.NewReader(set[1:])))
	if err != nil || flags != 0 || !reflect.DeepEqual(got, recs) {
		t.Errorf("ReadSetBulk: %v %v %+v", flags, err, got)
	}
	if got := AppendCountReply(nil, MagicSetBulk, 1); !bytes.Equal(got, mustHex(t, "B800000001")) {
		t.Errorf("count reply %x", got)
	}
	getResp := mustHex(t, "BA0000000100000000000500000005000000FFFFFFFFFF6A6170616E746F6B796F")
	grecs := []BulkRecord{{Key: []byte("japan"), Value: []byte("tokyo"), XT: 1<<40 - 1}}
	if got := AppendGetBulkReply(nil, grecs); !bytes.Equal(got, getResp) {
		t.Errorf("get_bulk reply %x", got)
	}
	rm := mustHex(t, "B90000000100000002000000000005"+"6A6170616E"+"0000000000056B6F726561")
	krecs := []BulkRecord{{Key: []byte("japan")}, {Key: []byte("korea")}}
	if got := AppendKeyBulkRequest(nil, MagicRemoveBulk, FlagNoReply, krecs); !bytes.Equal(got, rm) {
		t.Errorf("remove_bulk req %x", got)
	}
	ps := mustHex(t, "B4000000000000000400000001"+"6563686F"+"00000001000000016162")
	if got := AppendPlayScriptRequest(nil, 0, "echo", []KV{{"a", "b"}}); !bytes.Equal(got, ps) {
		t.Errorf("play_script req %x", got)
	}
	if got := AppendPlayScriptReply(nil, []KV{{"a", "b"}}); !bytes.Equal(got, mustHex(t, "B40000000100000001000000016162")) {
		t.Errorf("play_script reply %x", got)
	}
	repl := mustHex(t, "B10000000011F1B56470086B400002")
	if got := AppendReplRequest(nil, 0, 1293014011013000000, 2); !bytes.Equal(got, repl) {
		t.Errorf("repl req %x", got)
	}
	f, ts, sid, err := ReadReplRequest(bufio.NewReader(bytes.NewReader(repl[1:])))
	if err != nil || f != 0 || ts != 1293014011013000000 || sid != 2 {
		t.Errorf("ReadReplRequest %v %v %v %v", f, ts, sid, err)
	}
}

func TestBinaryErrors(t *testing.T) {
	// Oversize ksiz (bin-set-bulk-oversize): ErrFrame without reading the key.
	over := mustHex(t, "0000000000000001000020000000000000017fffffffffffffff6b6b6b6b")
	if flags, _, err := ReadSetBulk(bufio.NewReader(bytes.NewReader(over))); err != ErrFrame || flags != 0 {
		t.Errorf("oversize: %v", err)
	}
	noreply := mustHex(t, "0000000100000001000020000000000000017fffffffffffffff")
	if flags, _, err := ReadSetBulk(bufio.NewReader(bytes.NewReader(noreply))); err != ErrFrame || flags != FlagNoReply {
		t.Errorf("oversize noreply: %v %v", flags, err)
	}
	// Huge rnum with nothing behind it: no preallocation, clean EOF error.
	huge := mustHex(t, "00000000ffffffff")
	if _, _, err := ReadSetBulk(bufio.NewReader(bytes.NewReader(huge))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("huge rnum: %v", err)
	}
	if _, _, err := ReadKeyBulk(bufio.NewReader(bytes.NewReader(huge))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("huge rnum key bulk: %v", err)
	}
	// A size just under the limit with a short body: incremental read, EOF.
	big := mustHex(t, "000000000000000100000fffffff6b")
	if _, _, err := ReadKeyBulk(bufio.NewReader(bytes.NewReader(big))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("big ksiz: %v", err)
	}
	if _, _, _, err := ReadPlayScript(bufio.NewReader(bytes.NewReader(mustHex(t, "0000000010000001")))); err != ErrFrame {
		t.Errorf("play_script oversize name: %v", err)
	}
	if _, _, _, err := ReadReplRequest(bufio.NewReader(bytes.NewReader(mustHex(t, "000000")))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short repl: %v", err)
	}
}

// TestGoldenBinary parses every recorded binary request and reply and checks
// that the encoders reproduce the same bytes.
func TestGoldenBinary(t *testing.T) {
	checked := 0
	for _, f := range append(loadGolden(t, "binary"), loadGolden(t, "http")...) {
		name := filepath.Base(f.Path)
		for _, sec := range f.Sections {
			if (sec.Name != "request.hex" && sec.Name != "response.hex") || len(sec.Data) == 0 {
				continue
			}
			br := bufio.NewReader(bytes.NewReader(sec.Data))
			for {
				magic, err := br.ReadByte()
				if err != nil {
					break
				}
				var re []byte
				switch {
				case sec.Name == "request.hex" && magic == MagicSetBulk:
					flags, recs, err := ReadSetBulk(br)
					if err != nil {
						if name != "bin-set-bulk-oversize.txtar" && name != "bin-set-bulk-oversize-noreply.txtar" {
							t.Errorf("%s: %v", name, err)
						}
						goto next
					}
					re = AppendSetBulkRequest(nil, flags, recs)
				case sec.Name == "request.hex" && (magic == MagicRemoveBulk || magic == MagicGetBulk):
					flags, recs, err := ReadKeyBulk(br)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					re = AppendKeyBulkRequest(nil, magic, flags, recs)
				case sec.Name == "request.hex" && magic == MagicPlayScript:
					flags, n, args, err := ReadPlayScript(br)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					re = AppendPlayScriptRequest(nil, flags, n, args)
				case sec.Name == "request.hex" && magic == MagicReplication:
					flags, ts, sid, err := ReadReplRequest(br)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					re = AppendReplRequest(nil, flags, ts, sid)
				case sec.Name == "response.hex" && magic == MagicGetBulk:
					recs, err := ReadGetBulkReply(br)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					re = AppendGetBulkReply(nil, recs)
				case sec.Name == "response.hex" && (magic == MagicSetBulk || magic == MagicRemoveBulk):
					var b [4]byte
					if _, err := io.ReadFull(br, b[:]); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					re = AppendCountReply(nil, magic, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
				default:
					goto next // 0xBF, unknown magic, text after a binary byte
				}
				checked++
				if !bytes.Contains(sec.Data, re) {
					t.Errorf("%s %s: re-encoded %x not in %x", name, sec.Name, re, sec.Data)
				}
			}
		next:
		}
	}
	if checked < 30 {
		t.Errorf("only %d binary frames checked", checked)
	}
	t.Logf("%d binary frames round-tripped", checked)
}

// TestSetBulkFieldsApart: small keys and values share chunks (frameReader.bytes), yet
// each is a slice of its own: appending to one does not change the next, and fields
// larger than a chunk's share or spanning chunks read right.
func TestSetBulkFieldsApart(t *testing.T) {
	var recs []BulkRecord
	for i := range 300 {
		v := bytes.Repeat([]byte{byte(i)}, i%7*100) // 0–600 bytes: some past chunkedField
		recs = append(recs, BulkRecord{DBIdx: uint16(i % 3), Key: fmt.Appendf(nil, "key-%d", i), Value: v, XT: int64(i)})
	}
	req := AppendSetBulkRequest(nil, 0, recs)
	if req[0] != MagicSetBulk {
		t.Fatalf("magic %#x", req[0])
	}
	_, got, err := ReadSetBulk(bufio.NewReader(bytes.NewReader(req[1:])))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range got {
		got[i].Key = append(got[i].Key, "!!!!!!!!"...)
		got[i].Value = append(got[i].Value, "????????"...)
	}
	for i, r := range got {
		if string(r.Key) != string(recs[i].Key)+"!!!!!!!!" || string(r.Value) != string(recs[i].Value)+"????????" ||
			r.DBIdx != recs[i].DBIdx || r.XT != recs[i].XT {
			t.Fatalf("record %d: %q=%q (db %d xt %d), want %q=%q", i, r.Key, r.Value[:min(len(r.Value), 8)], r.DBIdx, r.XT, recs[i].Key, recs[i].Value[:min(len(recs[i].Value), 8)])
		}
	}
}
