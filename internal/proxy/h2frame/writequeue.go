package h2frame

import (
	"io"
	"sync"
)

// WriteQueue is a connection's outgoing frames and the group commit that
// sends them, for h2server and the engine's HTTP/2 client alike. Frames
// are appended to Buf (or written to the queue, as an io.Writer) under the
// connection's write lock, the mutex given to Init; Flush sends them.
//
// A goroutine that flushes while another is writing returns at once: the
// writing goroutine, which releases the lock during the system call,
// sends everything queued meanwhile with its next write. So frames that
// many streams queue at once (a burst of requests or responses) leave in
// one or two system calls and TLS records instead of one each in turn,
// in the order they were queued, which keeps the header encoder's state
// in step with the wire. A failed write is returned to the goroutine that
// made it, and by every Flush after; the frames others queued are lost
// with the connection, as when the peer goes away.
type WriteQueue struct {
	Buf []byte

	spare   []byte // Buf's next buffer while the last one is written
	writing bool
	err     error
	cond    sync.Cond // L is the write lock: a write ended
}

// MaxPendingWrite is how much Buf may hold while another goroutine writes
// before Room makes a writer wait: the socket's backpressure still
// reaches the writers of large bodies (the flow-control windows would let
// far more pile up), and a stream reset meanwhile still fails its write.
const MaxPendingWrite = 64 << 10

// keptWriteBuf is the largest buffer kept for the next batch.
const keptWriteBuf = 256 << 10

// Init sets the write lock; call it before any other method.
func (q *WriteQueue) Init(mu *sync.Mutex) { q.cond.L = mu }

// Write appends p to Buf; the write lock is held.
func (q *WriteQueue) Write(p []byte) (int, error) {
	q.Buf = append(q.Buf, p...)
	return len(p), nil
}

// Err is the write that failed, if one did; the write lock is held.
func (q *WriteQueue) Err() error { return q.err }

// Room waits, the write lock held, until n more bytes may be queued.
func (q *WriteQueue) Room(n int) {
	for q.writing && len(q.Buf)+n > MaxPendingWrite && q.err == nil {
		q.cond.Wait()
	}
}

// Flush sends Buf to w, unless another goroutine is writing, which then
// does. The write lock is held, released during each write and held
// again on return.
func (q *WriteQueue) Flush(w io.Writer) error {
	if q.err != nil || q.writing || len(q.Buf) == 0 {
		return q.err
	}
	q.writing = true
	for len(q.Buf) > 0 && q.err == nil {
		out := q.Buf
		q.Buf = q.spare[:0]
		q.cond.L.Unlock()
		_, err := w.Write(out)
		q.cond.L.Lock()
		if cap(out) <= keptWriteBuf {
			q.spare = out[:0]
		}
		if err != nil {
			q.err = err
		}
		q.cond.Broadcast()
	}
	q.writing = false
	q.cond.Broadcast()
	return q.err
}
