package h2server

import (
	"sync"
	"time"
)

// Handler goroutines are reused. A new goroutine starts with a small
// stack, and a request through the forwarding engine grows it several
// times (runtime.newstack copying it each time): in the in-process
// benchmark that was an eighth of the handler's CPU. A goroutine that
// served a stream parks here, with its grown stack, and takes the next
// stream of any connection of the Server; one idle for longer than
// workerIdle exits, so an idle sidecar keeps none.
const (
	maxIdleWorkers = 64
	workerIdle     = 2 * time.Second
)

type worker struct {
	ch    chan *stream
	since time.Time
}

type workerPool struct {
	mu     sync.Mutex
	idle   []*worker // most recently parked last
	timer  *time.Timer
	closed bool
}

// run serves st on an idle worker, or on a new goroutine.
func (p *workerPool) run(st *stream) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.ch <- st
		return
	}
	p.mu.Unlock()
	go p.work(st)
}

func (p *workerPool) work(st *stream) {
	var w *worker
	for {
		st.c.runHandler(st)
		if w == nil {
			w = &worker{ch: make(chan *stream, 1)}
		}
		if !p.park(w) {
			return
		}
		var ok bool
		if st, ok = <-w.ch; !ok {
			return
		}
	}
}

// park puts w on the idle list; false means the goroutine should exit.
func (p *workerPool) park(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= maxIdleWorkers {
		return false
	}
	w.since = time.Now()
	p.idle = append(p.idle, w)
	if p.timer == nil {
		p.timer = time.AfterFunc(workerIdle, p.expire)
	}
	return true
}

// expire ends the workers idle for workerIdle or longer: the oldest are
// first in the list.
func (p *workerPool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := time.Now().Add(-workerIdle)
	n := 0
	for n < len(p.idle) && !p.idle[n].since.After(cut) {
		close(p.idle[n].ch)
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	if len(p.idle) > 0 && !p.closed {
		p.timer.Reset(time.Until(p.idle[0].since.Add(workerIdle)) + time.Millisecond)
	} else {
		p.timer = nil
	}
}

// close ends every idle worker, and those parking from now on.
func (p *workerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, w := range p.idle {
		close(w.ch)
	}
	p.idle = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}
