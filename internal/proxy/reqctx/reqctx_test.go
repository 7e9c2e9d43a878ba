package reqctx

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type keyT struct{}

type countHook struct{ n atomic.Int32 }

func (h *countHook) ContextCanceled() { h.n.Add(1) }

func newCtx(parent context.Context) *Context {
	c := new(Context)
	c.Init(parent)
	return c
}

func TestCancelClosesDoneOnce(t *testing.T) {
	c := newCtx(context.Background())
	done := c.Done()
	select {
	case <-done:
		t.Fatal("Done closed before Cancel")
	default:
	}
	if c.Err() != nil {
		t.Fatalf("Err before Cancel = %v", c.Err())
	}
	c.Cancel(nil)
	c.Cancel(errors.New("second")) // no effect, no double close
	<-done
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled", c.Err())
	}
	// Asked only after the cancel: a closed channel too.
	c2 := newCtx(context.Background())
	c2.Cancel(context.DeadlineExceeded)
	<-c2.Done()
	if c2.Err() != context.DeadlineExceeded {
		t.Fatalf("Err = %v", c2.Err())
	}
}

func TestValueAndDeadlineAreTheParents(t *testing.T) {
	when := time.Now().Add(time.Hour)
	parent, cancel := context.WithDeadline(context.WithValue(context.Background(), keyT{}, "v"), when)
	defer cancel()
	c := newCtx(parent)
	if c.Value(keyT{}) != "v" {
		t.Fatalf("Value = %v", c.Value(keyT{}))
	}
	if d, ok := c.Deadline(); !ok || !d.Equal(when) {
		t.Fatalf("Deadline = %v %v", d, ok)
	}
}

func TestHook(t *testing.T) {
	c := newCtx(context.Background())
	var h countHook
	if !c.SetHook(&h) {
		t.Fatal("SetHook refused on a live context")
	}
	if c.SetHook(&countHook{}) {
		t.Fatal("a second hook was accepted")
	}
	if !c.ClearHook() {
		t.Fatal("ClearHook before Cancel = false")
	}
	c.Cancel(nil)
	if h.n.Load() != 0 {
		t.Fatal("a cleared hook ran")
	}

	c = newCtx(context.Background())
	h = countHook{}
	c.SetHook(&h)
	c.Cancel(nil)
	c.Cancel(nil)
	if h.n.Load() != 1 {
		t.Fatalf("hook ran %d times, want 1", h.n.Load())
	}
	if c.ClearHook() {
		t.Fatal("ClearHook after the hook ran = true")
	}
	if c.SetHook(&h) {
		t.Fatal("SetHook accepted on a cancelled context")
	}
}

func TestWatchContext(t *testing.T) {
	// On a Context: the hook, no AfterFunc.
	c := newCtx(context.Background())
	var h countHook
	w := WatchContext(c, &h)
	if w.rc != c {
		t.Fatal("WatchContext on a *Context did not use its hook")
	}
	// A second watch on the same context falls back to AfterFunc and
	// both run.
	var h2 countHook
	w2 := WatchContext(c, &h2)
	if w2.rc != nil || w2.stop == nil {
		t.Fatal("the second watch did not fall back to context.AfterFunc")
	}
	c.Cancel(nil)
	waitFor(t, func() bool { return h.n.Load() == 1 && h2.n.Load() == 1 })
	if w.Stop() || w2.Stop() {
		t.Fatal("Stop after the hooks ran = true")
	}

	// On another context: context.AfterFunc, stoppable.
	parent, cancel := context.WithCancel(context.Background())
	var h3 countHook
	w3 := WatchContext(parent, &h3)
	if !w3.Stop() {
		t.Fatal("Stop before cancel = false")
	}
	cancel()
	time.Sleep(10 * time.Millisecond)
	if h3.n.Load() != 0 {
		t.Fatal("a stopped watch ran")
	}
	var zero Watch
	if !zero.Stop() {
		t.Fatal("a zero Watch's Stop = false")
	}
}

func TestContextPackageOnTop(t *testing.T) {
	c := newCtx(context.Background())
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	var ran atomic.Bool
	stopped := context.AfterFunc(c, func() { ran.Store(true) })
	var never atomic.Bool
	stop := context.AfterFunc(c, func() { never.Store(true) })
	if !stop() {
		t.Fatal("stop before cancel = false")
	}

	// Cancelling a derived context leaves the request's alone.
	other, cancelOther := context.WithCancel(c)
	cancelOther()
	<-other.Done()
	if c.Err() != nil {
		t.Fatal("cancelling a child cancelled the parent")
	}

	c.Cancel(nil)
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a context.WithCancel child was not cancelled")
	}
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("child Err = %v", child.Err())
	}
	waitFor(t, ran.Load)
	if stopped() {
		t.Fatal("stop after the func ran = true")
	}
	if never.Load() {
		t.Fatal("a stopped AfterFunc ran")
	}
	// After the cancel: AfterFunc runs at once.
	var late atomic.Bool
	context.AfterFunc(c, func() { late.Store(true) })
	waitFor(t, late.Load)
}

func TestParentCancellationPropagates(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	c := newCtx(parent)
	var h countHook
	c.SetHook(&h)
	cancel(errors.New("connection closed"))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the parent's cancel did not reach the request")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err = %v", c.Err())
	}
	// Cancel closes Done first and runs the hook after, outside its lock,
	// on the goroutine of the parent's AfterFunc: it may still be coming.
	for deadline := time.Now().Add(5 * time.Second); h.n.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if h.n.Load() != 1 {
		t.Fatal("hook did not run on the parent's cancel")
	}

	// A parent already done: born cancelled.
	c2 := newCtx(parent)
	if c2.Err() == nil {
		t.Fatal("a context of a cancelled parent is live")
	}
	<-c2.Done()
}

func TestNoAllocationsOnTheCommonPath(t *testing.T) {
	parent := context.WithValue(context.Background(), keyT{}, 1)
	var h countHook
	c := new(Context)
	allocs := testing.AllocsPerRun(100, func() {
		*c = Context{}
		c.Init(parent)
		w := WatchContext(c, &h)
		if c.Err() != nil {
			t.Fatal("cancelled")
		}
		w.Stop()
		c.Cancel(nil)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request, want 0", allocs)
	}
}

func TestConcurrentCancelAndClear(t *testing.T) {
	for range 200 {
		c := newCtx(context.Background())
		var h countHook
		w := WatchContext(c, &h)
		var wg sync.WaitGroup
		var stopped atomic.Bool
		wg.Go(func() { c.Cancel(nil) })
		wg.Go(func() { stopped.Store(w.Stop()) })
		wg.Wait()
		// Exactly one of them wins: the hook ran, or Stop stopped it.
		if ran := h.n.Load() == 1; ran == stopped.Load() {
			t.Fatalf("hook ran = %v, Stop = %v", ran, stopped.Load())
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// endingCtx is a parent that ends while Init looks at it: its first Err
// is nil, but its Done is closed.
type endingCtx struct {
	context.Context
	calls atomic.Int32
}

func (p *endingCtx) Done() <-chan struct{} { return closed }

func (p *endingCtx) Err() error {
	if p.calls.Add(1) == 1 {
		return nil
	}
	return context.Canceled
}

// TestParentEndingDuringInit: a parent cancelled between Init's check
// and its watch cancels the context from the watch's goroutine while
// Init is still setting it up (go test -race).
func TestParentEndingDuringInit(t *testing.T) {
	p := &endingCtx{Context: context.Background()}
	c := newCtx(p)
	time.Sleep(20 * time.Millisecond) // the watch's goroutine runs, and Init's caller does nothing
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the parent's end did not reach the context")
	}
}
