//go:build linux

package walsync

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The io_uring system calls and constants this file uses (linux/io_uring.h).
const (
	sysIOUringSetup    = 425
	sysIOUringEnter    = 426
	sysIOUringRegister = 427

	opFsync         = 3      // IORING_OP_FSYNC
	fsyncDatasync   = 1      // IORING_FSYNC_DATASYNC
	sqeAsync        = 1 << 4 // IOSQE_ASYNC: straight to the kernel's workers
	registerEventfd = 4      // IORING_REGISTER_EVENTFD
	featSingleMmap  = 1      // IORING_FEAT_SINGLE_MMAP
	featRWCurPos    = 1 << 3 // IORING_FEAT_RW_CUR_POS: Linux 5.6, which has IOSQE_ASYNC

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	ringEntries = 64
	maxTries    = 100 // interrupted or refused for now: then fdatasync(2)
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// ring syncs files through an io_uring: the sync runs on one of the kernel's workers
// and its completion reaches the waiting goroutine through the network poller, so the
// goroutine parks instead of holding its P in a system call for the sync's duration.
type ring struct {
	fd  int
	efd *os.File
	// slots bounds the syncs in flight to the completion queue's size, so that no
	// completion ever overflows it.
	slots chan struct{}

	mu      sync.Mutex // submissions and waiters
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []sqe
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []cqe
	waiters map[uint64]chan int32
	next    uint64
}

var (
	ringOnce sync.Once
	theRing  *ring
)

// syncRing returns the process's ring, or nil where io_uring is unavailable (an old
// kernel, a seccomp filter) or turned off: then files are synced with fdatasync.
func syncRing() *ring {
	if ringOff.Load() {
		return nil
	}
	ringOnce.Do(func() {
		if r, err := newRing(); err == nil {
			theRing = r
			go r.reap()
		}
	})
	return theRing
}

func newRing() (*ring, error) {
	var p uringParams
	fd, _, e := syscall.Syscall(sysIOUringSetup, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, e
	}
	r := &ring{fd: int(fd), waiters: make(map[uint64]chan int32)}
	var maps [][]byte
	fail := func(err error) (*ring, error) {
		for _, m := range maps {
			syscall.Munmap(m)
		}
		syscall.Close(r.fd)
		return nil, err
	}
	if p.features&featSingleMmap == 0 || p.features&featRWCurPos == 0 {
		return fail(errors.New("walsync: io_uring older than Linux 5.6"))
	}
	size := max(int(p.sqOff.array+p.sqEntries*4), int(p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{}))))
	rings, err := syscall.Mmap(r.fd, offSQRing, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return fail(err)
	}
	maps = append(maps, rings)
	sqesMem, err := syscall.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return fail(err)
	}
	maps = append(maps, sqesMem)
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&rings[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(p.sqOff.head), u32(p.sqOff.tail), *u32(p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(u32(p.sqOff.array), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&sqesMem[0])), p.sqEntries)
	r.cqHead, r.cqTail, r.cqMask = u32(p.cqOff.head), u32(p.cqOff.tail), *u32(p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&rings[p.cqOff.cqes])), p.cqEntries)
	r.slots = make(chan struct{}, min(p.cqEntries, p.sqEntries))

	efd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		return fail(e)
	}
	efd32 := int32(efd)
	if _, _, e := syscall.Syscall6(sysIOUringRegister, fd, registerEventfd, uintptr(unsafe.Pointer(&efd32)), 1, 0, 0); e != 0 {
		syscall.Close(int(efd))
		return fail(e)
	}
	r.efd = os.NewFile(efd, "io_uring-eventfd") // non-blocking: read through the poller
	return r, nil
}

// fdatasync syncs fd's data as fdatasync(2) does and returns true with its error,
// or false if the sync could not be submitted (the caller syncs another way).
func (r *ring) fdatasync(fd uintptr) (bool, error) {
	r.slots <- struct{}{}
	defer func() { <-r.slots }()
	ch := make(chan int32, 1)
	r.mu.Lock()
	r.next++
	id := r.next
	tail := atomic.LoadUint32(r.sqTail)
	i := tail & r.sqMask
	r.sqes[i] = sqe{opcode: opFsync, flags: sqeAsync, fd: int32(fd), opFlags: fsyncDatasync, userData: id}
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, tail+1)
	r.waiters[id] = ch
	for try := 0; ; try++ {
		_, _, e := syscall.Syscall6(sysIOUringEnter, uintptr(r.fd), 1, 0, 0, 0, 0)
		if e == 0 || atomic.LoadUint32(r.sqHead) != tail {
			break // submitted (an interrupted call may have submitted it too)
		}
		if e != syscall.EINTR && e != syscall.EAGAIN || try == maxTries {
			// Not submitted: take the entry back; the kernel has not read it.
			atomic.StoreUint32(r.sqTail, tail)
			delete(r.waiters, id)
			r.mu.Unlock()
			return false, nil
		}
	}
	r.mu.Unlock()
	if res := <-ch; res < 0 {
		return true, syscall.Errno(-res)
	}
	return true, nil
}

// reap hands each completion to its waiter. It waits for completions on the eventfd
// the kernel signals, through the network poller.
func (r *ring) reap() {
	var buf [8]byte
	for {
		head := atomic.LoadUint32(r.cqHead)
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			if _, err := r.efd.Read(buf[:]); err != nil {
				// Never seen; the waiters must not hang, so poll the queue instead.
				time.Sleep(time.Millisecond)
			}
			continue
		}
		for ; head != tail; head++ {
			c := r.cqes[head&r.cqMask]
			r.mu.Lock()
			ch := r.waiters[c.userData]
			delete(r.waiters, c.userData)
			r.mu.Unlock()
			if ch != nil {
				ch <- c.res
			}
		}
		atomic.StoreUint32(r.cqHead, head)
	}
}
