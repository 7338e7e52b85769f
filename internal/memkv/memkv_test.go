package memkv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// The tests hold memkv to Pebble's behaviour: the same random operations on
// both, every read compared.

func openPebble(t testing.TB) *pebble.DB {
	t.Helper()
	pdb, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pdb.Close() })
	return pdb
}

// twin applies every write to a memkv DB and a Pebble DB.
type twin struct {
	t   *testing.T
	rng *rand.Rand
	m   *DB
	p   *pebble.DB
}

func (w *twin) key() []byte {
	return fmt.Appendf(nil, "k%02d", w.rng.IntN(40))
}

func (w *twin) value() []byte {
	if w.rng.IntN(8) == 0 {
		return nil
	}
	return fmt.Appendf(nil, "v%d", w.rng.IntN(1000))
}

// bounds returns random iterator options (nil, or one or both bounds).
func (w *twin) bounds() *pebble.IterOptions {
	if w.rng.IntN(3) == 0 {
		return nil
	}
	o := &pebble.IterOptions{}
	if w.rng.IntN(2) == 0 {
		o.LowerBound = w.key()
	}
	if w.rng.IntN(2) == 0 {
		o.UpperBound = w.key()
	}
	if o.LowerBound != nil && o.UpperBound != nil && bytes.Compare(o.LowerBound, o.UpperBound) > 0 {
		o.LowerBound, o.UpperBound = o.UpperBound, o.LowerBound
	}
	return o
}

// writes adds the same random writes to a memkv batch and a Pebble batch.
func (w *twin) writes(mb *Batch, pb *pebble.Batch, n int) {
	for range n {
		switch r := w.rng.IntN(20); {
		case r < 12:
			k, v := w.key(), w.value()
			mb.Set(k, v, nil)
			pb.Set(k, v, nil)
		case r < 18:
			k := w.key()
			mb.Delete(k, nil)
			pb.Delete(k, nil)
		case r < 19:
			a, b := w.key(), w.key()
			if bytes.Compare(a, b) > 0 {
				a, b = b, a
			}
			mb.DeleteRange(a, b, nil)
			pb.DeleteRange(a, b, nil)
		default:
			d := w.value()
			mb.LogData(d, nil)
			pb.LogData(d, nil)
		}
	}
	if mb.Len() != pb.Len() || mb.Empty() != pb.Empty() {
		w.t.Fatalf("batch Len/Empty: memkv %d/%v, pebble %d/%v", mb.Len(), mb.Empty(), pb.Len(), pb.Empty())
	}
}

// compareGets compares Get of every key.
func (w *twin) compareGets(what string, mget, pget func([]byte) ([]byte, error)) {
	for i := range 40 {
		k := fmt.Appendf(nil, "k%02d", i)
		mv, merr := mget(k)
		pv, perr := pget(k)
		if (merr == nil) != (perr == nil) || !bytes.Equal(mv, pv) {
			w.t.Fatalf("%s: Get(%s): memkv %q %v, pebble %q %v", what, k, mv, merr, pv, perr)
		}
		if merr != nil && !errors.Is(merr, pebble.ErrNotFound) {
			w.t.Fatalf("%s: Get(%s): %v", what, k, merr)
		}
	}
}

type iterator interface {
	First() bool
	Last() bool
	SeekGE([]byte) bool
	SeekLT([]byte) bool
	Next() bool
	Prev() bool
	Valid() bool
	Key() []byte
	Value() []byte
	Close() error
}

// compareIters drives both iterators through the same random moves.
func (w *twin) compareIters(what string, mi, pi iterator) {
	defer mi.Close()
	defer pi.Close()
	for step := range 60 {
		var mv, pv bool
		var move string
		r := w.rng.IntN(10)
		if step == 0 && r >= 4 {
			r = 0 // Next and Prev need a positioned iterator first
		}
		switch {
		case r == 0:
			move, mv, pv = "First", mi.First(), pi.First()
		case r == 1:
			move, mv, pv = "Last", mi.Last(), pi.Last()
		case r == 2:
			k := w.key()
			move, mv, pv = "SeekGE "+string(k), mi.SeekGE(k), pi.SeekGE(k)
		case r == 3:
			k := w.key()
			move, mv, pv = "SeekLT "+string(k), mi.SeekLT(k), pi.SeekLT(k)
		case r < 7:
			move, mv, pv = "Next", mi.Next(), pi.Next()
		default:
			move, mv, pv = "Prev", mi.Prev(), pi.Prev()
		}
		if mv != pv || mv != mi.Valid() || pv != pi.Valid() {
			w.t.Fatalf("%s: %s: memkv valid %v, pebble %v", what, move, mv, pv)
		}
		if mv && (!bytes.Equal(mi.Key(), pi.Key()) || !bytes.Equal(mi.Value(), pi.Value())) {
			w.t.Fatalf("%s: %s: memkv %s=%q, pebble %s=%q", what, move, mi.Key(), mi.Value(), pi.Key(), pi.Value())
		}
	}
}

func TestMatchesPebble(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := &twin{t: t, rng: rand.New(rand.NewPCG(seed, 7)), m: New(), p: openPebble(t)}
			type snapPair struct {
				m *Snapshot
				p *pebble.Snapshot
			}
			var snaps []snapPair
			for round := range 30 {
				mb, pb := w.m.NewBatch(), w.p.NewBatch()
				w.writes(mb, pb, 1+w.rng.IntN(8))
				if err := mb.Commit(nil); err != nil {
					t.Fatal(err)
				}
				if err := pb.Commit(pebble.NoSync); err != nil {
					t.Fatal(err)
				}
				mb.Close()
				pb.Close()
				if w.rng.IntN(4) == 0 {
					snaps = append(snaps, snapPair{w.m.NewSnapshot(), w.p.NewSnapshot()})
				}

				what := fmt.Sprintf("round %d", round)
				w.compareGets(what, func(k []byte) ([]byte, error) {
					v, _, err := w.m.Get(k)
					return v, err
				}, pebbleGet(w.p.Get))
				mi, _ := w.m.NewIter(w.bounds())
				o := copyOpts(mi)
				pi, _ := w.p.NewIter(o)
				w.compareIters(what+" iter", mi, pi)

				// Indexed batches: reads of their own writes over the DB.
				mib, pib := w.m.NewIndexedBatch(), w.p.NewIndexedBatch()
				w.writes(mib, pib, 1+w.rng.IntN(6))
				w.compareGets(what+" indexed", func(k []byte) ([]byte, error) {
					v, _, err := mib.Get(k)
					return v, err
				}, pebbleGet(pib.Get))
				mi, _ = mib.NewIter(w.bounds())
				pi, _ = pib.NewIter(copyOpts(mi))
				w.compareIters(what+" indexed iter", mi, pi)
				// Apply a plain batch into the indexed one, as a transaction does.
				mb, pb = w.m.NewBatch(), w.p.NewBatch()
				w.writes(mb, pb, 1+w.rng.IntN(4))
				if err := mib.Apply(mb); err != nil {
					t.Fatal(err)
				}
				if err := pib.Apply(pb, nil); err != nil {
					t.Fatal(err)
				}
				mb.Close()
				pb.Close()
				if mib.Len() != pib.Len() {
					t.Fatalf("%s: indexed Len after Apply: memkv %d, pebble %d", what, mib.Len(), pib.Len())
				}
				if w.rng.IntN(2) == 0 {
					if err := mib.Commit(nil); err != nil {
						t.Fatal(err)
					}
					if err := pib.Commit(pebble.NoSync); err != nil {
						t.Fatal(err)
					}
				}
				mib.Close()
				pib.Close()

				for i, s := range snaps {
					sw := fmt.Sprintf("%s snapshot %d", what, i)
					w.compareGets(sw, func(k []byte) ([]byte, error) {
						v, _, err := s.m.Get(k)
						return v, err
					}, pebbleGet(s.p.Get))
					mi, _ := s.m.NewIter(w.bounds())
					pi, _ := s.p.NewIter(copyOpts(mi))
					w.compareIters(sw+" iter", mi, pi)
				}
			}
			for _, s := range snaps {
				s.m.Close()
				s.p.Close()
			}
		})
	}
}

func pebbleGet(get func([]byte) ([]byte, io.Closer, error)) func([]byte) ([]byte, error) {
	return func(k []byte) ([]byte, error) {
		v, c, err := get(k)
		if err != nil {
			return nil, err
		}
		v = bytes.Clone(v)
		c.Close()
		return v, nil
	}
}

func copyOpts(it *Iter) *pebble.IterOptions {
	if it.lower == nil && it.upper == nil {
		return nil
	}
	return &pebble.IterOptions{LowerBound: it.lower, UpperBound: it.upper}
}

func TestBytesAndClose(t *testing.T) {
	db := New()
	db.Set([]byte("a"), []byte("123"), nil)
	db.Set([]byte("b"), []byte("45"), nil)
	db.Set([]byte("a"), []byte("1"), nil)
	if db.Len() != 2 || db.Bytes() != 5 {
		t.Fatalf("Len %d Bytes %d, want 2 and 5", db.Len(), db.Bytes())
	}
	if n := db.RangeBytes([]byte("b"), []byte("c")); n != 3 {
		t.Fatalf("RangeBytes = %d, want 3", n)
	}
	b := db.NewBatch()
	b.DeleteRange([]byte("a"), []byte("b"), nil)
	b.Commit(nil)
	b.Close()
	if db.Len() != 1 || db.Bytes() != 3 {
		t.Fatalf("after DeleteRange: Len %d Bytes %d, want 1 and 3", db.Len(), db.Bytes())
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Get([]byte("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	b = db.NewBatch()
	b.Set([]byte("c"), nil, nil)
	if err := b.Commit(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
}

// TestValuesStayValid: a value read stays as it was while later writes,
// batches reusing pooled buffers, replace and delete its record.
func TestValuesStayValid(t *testing.T) {
	db := New()
	db.Set([]byte("k"), []byte("first"), nil)
	v, _, _ := db.Get([]byte("k"))
	it, _ := db.NewIter(nil)
	it.First()
	for i := range 100 {
		db.Set([]byte("k"), fmt.Appendf(nil, "other%d", i), nil)
		db.Delete([]byte("k"), nil)
	}
	if string(v) != "first" || string(it.Value()) != "first" || string(it.Key()) != "k" {
		t.Fatalf("held slices changed: %q %q %q", v, it.Key(), it.Value())
	}
}

// TestConcurrent runs writers, readers, iterators and snapshots together
// (for the race detector), then checks a snapshot stayed as it was.
func TestConcurrent(t *testing.T) {
	db := New()
	for i := range 100 {
		db.Set(fmt.Appendf(nil, "k%03d", i), []byte("0"), nil)
	}
	snap := db.NewSnapshot()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				k := fmt.Appendf(nil, "k%03d", rng.IntN(100))
				switch rng.IntN(5) {
				case 0:
					b := db.NewBatch()
					b.Set(k, []byte("1"), nil)
					b.Delete(fmt.Appendf(nil, "k%03d", rng.IntN(100)), nil)
					b.Commit(nil)
					b.Close()
				case 1:
					db.Get(k)
				case 2:
					it, _ := db.NewIter(&pebble.IterOptions{LowerBound: k})
					for ok := it.First(); ok; ok = it.Next() {
					}
					it.Close()
				case 3:
					s := db.NewSnapshot()
					it, _ := s.NewIter(nil)
					n := 0
					for ok := it.Last(); ok; ok = it.Prev() {
						n++
					}
					s.Close()
				default:
					ib := db.NewIndexedBatch()
					ib.Set(k, []byte("2"), nil)
					it, _ := ib.NewIter(nil)
					for ok := it.First(); ok; ok = it.Next() {
					}
					ib.Commit(nil)
					ib.Close()
				}
			}
		}()
	}
	wg.Wait()
	it, _ := snap.NewIter(nil)
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if string(it.Value()) != "0" {
			t.Fatalf("snapshot sees a later write: %s=%s", it.Key(), it.Value())
		}
		n++
	}
	if n != 100 {
		t.Fatalf("snapshot holds %d records, want 100", n)
	}
}

// TestOrderWithPrefixes: the tree's order is bytes.Compare's, whatever the
// keys' lengths around the 8-byte prefix the comparison starts with.
func TestOrderWithPrefixes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte{0, 1, 'a', 0xff}
	for range 2000 {
		a := make([]byte, rng.IntN(24))
		b := make([]byte, rng.IntN(24))
		for i := range a {
			a[i] = alphabet[rng.IntN(len(alphabet))]
		}
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if i := rng.IntN(24); i < len(a) && i < len(b) {
			copy(b[:i], a[:i]) // share a prefix of random length
		}
		if got, want := less(probe(a), probe(b)), bytes.Compare(a, b) < 0; got != want {
			t.Fatalf("less(%x, %x) = %v, want %v", a, b, got, want)
		}
	}
}

// TestEntrySize: an entry is 32 bytes in the tree's nodes (docs/design.md counts on it
// for the memory per record).
func TestEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(entry{}); got != 32 {
		t.Fatalf("entry is %d bytes, want 32", got)
	}
}
