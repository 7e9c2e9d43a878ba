// Package reqctx is the context of one request served by the sidecar's own
// HTTP servers (h1server, h2server).
//
// context.WithCancel and context.AfterFunc cost a request about seven
// allocations and two map operations in the forwarding engine's common
// path: the cancelCtx, its lazily made Done channel, the children map the
// AfterFunc registers in, the afterFuncCtx, its stop closure and the
// callback's closure (an allocation profile of a plaintext sidecar put them
// at a third of its allocations per request). A request's context is
// cancelled in two cases only, the client went away or the handler
// returned, and the engine hangs one callback on it per upstream exchange.
// Context does exactly that with no allocation beyond its own, which the
// servers embed in a per-request struct they allocate anyway; context's
// generic machinery (Done, AfterFunc, derived contexts) still works on it.
package reqctx

import (
	"context"
	"sync"
	"time"
)

// A Hook is told, once, that the request's context was cancelled. The
// forwarding engine's exchanges implement it to interrupt their blocked
// I/O; it must not block.
type Hook interface {
	ContextCanceled()
}

// Context is a request's context. Its zero value is not usable: call Init.
// It must not be copied after Init.
type Context struct {
	parent context.Context

	mu      sync.Mutex
	done    chan struct{} // made by the first Done, unless cancelled first
	err     error
	hook    Hook
	funcs   map[uint64]func() // context.AfterFunc callbacks and derived contexts
	nextID  uint64
	unwatch func() bool // stops the watch on a cancellable parent
}

// closed is the Done channel of a context cancelled before anyone asked.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Init makes c a child of parent: it has parent's values and deadline,
// and is cancelled when parent is.
func (c *Context) Init(parent context.Context) {
	c.parent = parent
	if parent.Done() == nil {
		return // the servers' connection contexts: nothing to watch
	}
	if err := parent.Err(); err != nil {
		c.err = err
		return
	}
	stop := context.AfterFunc(parent, func() { c.Cancel(parent.Err()) })
	// Under mu: a parent ending meanwhile runs Cancel on another
	// goroutine already, which then needs no stop.
	c.mu.Lock()
	if c.err == nil {
		c.unwatch = stop
	}
	c.mu.Unlock()
}

// Deadline is the parent's.
func (c *Context) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Done returns a channel closed when c is cancelled.
func (c *Context) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			return closed
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// Err is nil until c is cancelled, then the reason.
func (c *Context) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Value is the parent's value for key.
func (c *Context) Value(key any) any { return c.parent.Value(key) }

func (c *Context) String() string { return "reqctx.Context" }

// Cancel cancels c with err (context.Canceled when nil): it closes Done,
// runs the hook and starts the AfterFunc callbacks. Only the first call
// has an effect.
func (c *Context) Cancel(err error) {
	if err == nil {
		err = context.Canceled
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	h, funcs, unwatch := c.hook, c.funcs, c.unwatch
	c.hook, c.funcs, c.unwatch = nil, nil, nil
	c.mu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	if h != nil {
		h.ContextCanceled()
	}
	for _, f := range funcs {
		go f()
	}
}

// SetHook sets the one hook c runs when cancelled. It reports false,
// setting nothing, when c is already cancelled or has a hook.
func (c *Context) SetHook(h Hook) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.hook != nil {
		return false
	}
	c.hook = h
	return true
}

// ClearHook removes the hook. It reports whether it was removed before c
// was cancelled; false means the hook ran or is running.
func (c *Context) ClearHook() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hook == nil {
		return false
	}
	c.hook = nil
	return true
}

// AfterFunc is what context.AfterFunc and context.WithCancel use on a
// parent that has it: f runs in its own goroutine once c is cancelled
// (at once if it already is), unless stop is called first; stop reports
// whether it stopped f.
func (c *Context) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	if c.funcs == nil {
		c.funcs = make(map[uint64]func())
	}
	id := c.nextID
	c.nextID++
	c.funcs[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.funcs[id]; !ok {
			return false
		}
		delete(c.funcs, id)
		return true
	}
}

// A Watch is a hook hung on a context by WatchContext.
type Watch struct {
	rc   *Context
	stop func() bool
}

// WatchContext arranges for h.ContextCanceled to be called once ctx is
// cancelled (at once, in another goroutine, if it already is). On a
// *Context with no hook yet this costs no allocation; on any other context
// it is context.AfterFunc.
func WatchContext(ctx context.Context, h Hook) Watch {
	if rc, ok := ctx.(*Context); ok && rc.SetHook(h) {
		return Watch{rc: rc}
	}
	return Watch{stop: context.AfterFunc(ctx, h.ContextCanceled)}
}

// Active reports whether w holds a hook that Stop has not undone.
func (w Watch) Active() bool { return w.rc != nil || w.stop != nil }

// Stop undoes the watch. It reports whether it did so before the hook was
// called; false means the hook ran or is running. A zero Watch reports
// true.
func (w *Watch) Stop() bool {
	switch {
	case w.rc != nil:
		ok := w.rc.ClearHook()
		w.rc = nil
		return ok
	case w.stop != nil:
		ok := w.stop()
		w.stop = nil
		return ok
	}
	return true
}
