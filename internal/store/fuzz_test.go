package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// validOptions returns an OPTIONS file as Pebble writes it for a ktd store.
func validOptions(t testing.TB) []byte {
	t.Helper()
	fsys := vfs.NewMem()
	cache := pebble.NewCache(1 << 20)
	defer cache.Unref()
	opts := pebbleOptions(cache, slog.New(slog.DiscardHandler), "db")
	opts.FS = fsys
	db, err := pebble.Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	names, _ := fsys.List("db")
	for _, n := range names {
		if strings.HasPrefix(n, "OPTIONS-") {
			b, err := readFile(fsys, fsys.PathJoin("db", n))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("Pebble wrote no OPTIONS file")
	return nil
}

// TestCheckOptionsText_EveryPrefixRefused checks that a whole OPTIONS file passes and
// that every proper prefix of it (a file cut short anywhere) is refused.
func TestCheckOptionsText_EveryPrefixRefused(t *testing.T) {
	valid := validOptions(t)
	if err := checkOptionsText(valid); err != nil {
		t.Fatalf("a whole OPTIONS file: %v", err)
	}
	for n := range len(valid) {
		if checkOptionsText(valid[:n]) == nil {
			t.Fatalf("the first %d of %d bytes pass as a whole OPTIONS file", n, len(valid))
		}
	}
}

// FuzzCheckOptionsText feeds arbitrary text to the OPTIONS check (it must not panic),
// and checks that a whole OPTIONS file cut at the fuzzer's point is refused.
func FuzzCheckOptionsText(f *testing.F) {
	valid := validOptions(f)
	f.Add(valid, uint(len(valid)/2))
	f.Add([]byte("[Version]\n  pebble_version=0.1\n"), uint(7))
	f.Add([]byte("[Options]\n=\n[]\n[Level \"0\"]\nx\n"), uint(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint) {
		_ = checkOptionsText(data)
		if n := int(cut % uint(len(valid))); checkOptionsText(valid[:n]) == nil {
			t.Fatalf("the first %d bytes of an OPTIONS file pass", n)
		}
	})
}

// batchOp is one entry decoded from a batch.
type batchOp struct {
	seq        pebble.SeqNum
	kind       pebble.InternalKeyKind
	key, value string
}

func decodeOps(data []byte) ([]batchOp, error) {
	var ops []batchOp
	err := decodeBatch(data, func(seq pebble.SeqNum, kind pebble.InternalKeyKind, key, value []byte) error {
		ops = append(ops, batchOp{seq, kind, string(key), string(value)})
		return nil
	})
	return ops, err
}

// encodeOps encodes ops as a batch whose first sequence number is seq.
func encodeOps(seq pebble.SeqNum, ops []batchOp) []byte {
	b := make([]byte, batchHeaderLen)
	binary.LittleEndian.PutUint64(b, uint64(seq))
	var count uint32
	for _, op := range ops {
		b = append(b, byte(op.kind))
		b = binary.AppendUvarint(b, uint64(len(op.key)))
		b = append(b, op.key...)
		switch op.kind {
		case pebble.InternalKeyKindSet, pebble.InternalKeyKindMerge, pebble.InternalKeyKindRangeDelete,
			pebble.InternalKeyKindRangeKeySet, pebble.InternalKeyKindRangeKeyUnset, pebble.InternalKeyKindRangeKeyDelete,
			pebble.InternalKeyKindDeleteSized, pebble.InternalKeyKindExcise:
			b = binary.AppendUvarint(b, uint64(len(op.value)))
			b = append(b, op.value...)
		}
		if op.kind != pebble.InternalKeyKindLogData {
			count++
		}
	}
	binary.LittleEndian.PutUint32(b[8:], count)
	return b
}

// FuzzDecodeBatch feeds arbitrary bytes to the WAL batch decoder: it must not panic, a
// batch it accepts holds as many sequenced entries as its header counts, and encoding
// what it decoded decodes to the same entries. Batches Pebble itself encodes seed it.
func FuzzDecodeBatch(f *testing.F) {
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem(), Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		f.Fatal(err)
	}
	b := db.NewBatch()
	b.Set([]byte("\x01key"), []byte("value"), nil)
	b.LogData([]byte("log"), nil)
	b.Delete([]byte("\x01gone"), nil)
	b.DeleteRange([]byte{prefixULog}, []byte{prefixULog, 9}, nil)
	f.Add(bytes.Clone(b.Repr()))
	b.Close()
	db.Close()
	f.Add(encodeOps(7, []batchOp{{kind: pebble.InternalKeyKindSingleDelete, key: "k"}, {kind: pebble.InternalKeyKindDeleteSized, key: "k", value: "\x05"}}))
	f.Add([]byte{})
	f.Add(make([]byte, batchHeaderLen))
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeOps(data)
		if err != nil {
			return
		}
		seq, count, _ := batchSeqs(data)
		var n uint32
		for _, op := range ops {
			if op.kind == pebble.InternalKeyKindLogData {
				continue
			}
			if op.seq != seq+pebble.SeqNum(n) {
				t.Fatalf("entry %d has seq %d, want %d", n, op.seq, seq+pebble.SeqNum(n))
			}
			n++
		}
		if n != count {
			t.Fatalf("%d sequenced entries, header count %d", n, count)
		}
		again, err := decodeOps(encodeOps(seq, ops))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(ops) {
			t.Fatalf("re-encoded batch decodes to %v (%v), want %v", again, err, ops)
		}
	})
}
