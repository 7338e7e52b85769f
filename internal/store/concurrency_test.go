package store

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestDB_CountSizeConcurrent hammers overlapping keys from many goroutines with every
// kind of write and checks Count/Size against a scan.
func TestDB_CountSizeConcurrent(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+", clock)
	const workers, ops, nkeys = 8, 400, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				k := []byte(fmt.Sprint("k", r.IntN(nkeys)))
				v := make([]byte, r.IntN(20))
				var err error
				switch r.IntN(10) {
				case 0, 1:
					err = db.Set(k, v, NoXT)
				case 2:
					err = db.Remove(k)
				case 3:
					err = db.Append(k, v, NoXT)
				case 4:
					err = db.Add(k, v, -1) // already expired
				case 5:
					_, err = db.Increment(k, 1, 0, NoXT)
				case 6:
					_, _, err = db.Seize(k)
				case 7:
					_, err = db.SetBulk([]Record{{Key: k, Value: v, XT: NoXT}, {Key: []byte("k0"), Value: v, XT: 10}}, true)
				case 8:
					_, err = db.RemoveBulk([][]byte{k, []byte("k1")}, false)
				case 9:
					_, err = db.Sweep(10)
				}
				if err != nil && err != ErrNoRecord && err != ErrDuplicate && err != ErrLogic {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := db.Clear(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	checkCounts(t, db)
}

func TestDB_Sweep(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+", clock)
	for i := range 100 {
		xt := NoXT
		if i%2 == 0 {
			xt = 10 // expires in 10 s
		}
		mustSet(t, db, fmt.Sprintf("k%03d", i), "v", xt)
	}
	if wrapped, err := db.Sweep(1000); err != nil || !wrapped || db.Count() != 100 {
		t.Fatalf("Sweep before expiry: %v, %v, count %d", wrapped, err, db.Count())
	}
	clock.Advance(11)
	// Expired records still count (and scan) until swept.
	if db.Count() != 100 || len(keys(t, db)) != 100 {
		t.Fatalf("count %d before sweep", db.Count())
	}
	// Due records go at most budget per call: 30, then the other 20.
	for _, want := range []int64{70, 50, 50} {
		if done, err := db.Sweep(30); err != nil || !done {
			t.Fatalf("Sweep: %v, %v", done, err)
		}
		if db.Count() != want {
			t.Fatalf("count after sweep = %d, want %d", db.Count(), want)
		}
	}
	checkCounts(t, db)

	// A pass over the keys is incremental: it goes on where the last call stopped.
	db.expiryHint.Store(true)
	passes := 0
	for {
		passes++
		done, err := db.Sweep(30)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if passes != 2 {
		t.Errorf("passes = %d, want 2 (50 records, 30 a call)", passes)
	}

	// Vacuum does a full pass.
	for i := range 10 {
		mustSet(t, db, fmt.Sprint("x", i), "v", 0)
	}
	clock.Advance(1)
	if err := db.Vacuum(0); err != nil {
		t.Fatal(err)
	}
	if db.Count() != 50 {
		t.Fatalf("count after vacuum = %d, want 50", db.Count())
	}
	checkCounts(t, db)
}

func TestDB_LRUCapCount(t *testing.T) {
	db := openTest(t, "*#capcnt=3", newClock(testNow))
	for _, k := range []string{"a", "b", "c"} {
		mustSet(t, db, k, "v", NoXT)
	}
	// Reading a makes b the least recently used.
	wantGet(t, db, "a", "v", XTMax)
	mustSet(t, db, "d", "v", NoXT)
	if got := fmt.Sprint(keys(t, db)); got != "[a c d]" {
		t.Fatalf("keys = %s, want [a c d]", got)
	}
	mustSet(t, db, "e", "v", NoXT)
	if got := fmt.Sprint(keys(t, db)); got != "[a d e]" {
		t.Fatalf("keys = %s, want [a d e]", got)
	}
	if db.Count() != 3 {
		t.Fatalf("Count = %d", db.Count())
	}
	checkCounts(t, db)

	sized := openTest(t, "%#capsiz=30", newClock(testNow))
	for i := range 10 {
		mustSet(t, sized, fmt.Sprint(i), "12345", NoXT) // 1+5+5 = 11 bytes each
	}
	if sized.Size() > 30 || sized.Count() != 2 {
		t.Fatalf("capsiz: count %d size %d", sized.Count(), sized.Size())
	}
	checkCounts(t, sized)
}

func TestDB_KTCapCount(t *testing.T) {
	db := openTest(t, "+#ktcapcnt=10", newClock(testNow))
	for i := range 50 {
		mustSet(t, db, fmt.Sprintf("k%02d", i), "v", NoXT)
		if db.Count() > 10 {
			t.Fatalf("after %d sets Count = %d > 10", i+1, db.Count())
		}
	}
	checkCounts(t, db)
	// Evictions are not logical changes, and Sweep keeps the cap too.
	bySize := openTest(t, "+#ktcapsiz=100", newClock(testNow))
	for i := range 50 {
		mustSet(t, bySize, fmt.Sprintf("k%02d", i), "0123456789", NoXT) // 18 bytes each
	}
	if bySize.Size() > 100 {
		t.Fatalf("Size = %d > 100", bySize.Size())
	}
	checkCounts(t, bySize)
}
