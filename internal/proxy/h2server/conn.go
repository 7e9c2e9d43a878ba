package h2server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/h2frame"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// clientPreface is what every HTTP/2 client sends first.
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// initialWindow is HTTP/2's initial flow-control window (RFC 9113 6.9.2).
const initialWindow = 65535

// maxWindow is the largest flow-control window.
const maxWindow = 1<<31 - 1

// maxQueuedControl bounds the control frames (PING and SETTINGS acks,
// RST_STREAM...) queued while the peer does not read; past it the
// connection is closed, as net/http's server does after 10,000 frames.
const maxQueuedControl = 256 << 10

var (
	errClientDisconnected = errors.New("client disconnected")
	errStreamClosed       = errors.New("http2: stream closed")
	errHandlerComplete    = errors.New("http2: request body closed due to handler exiting")
	errClosedBody         = errors.New("http2: request body closed by handler")
)

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// conn is one HTTP/2 connection. Fields are owned as commented: "reader"
// means the connection's reader goroutine alone, "mu" and "wmu" the
// mutexes.
type conn struct {
	s      *Server
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	// streamParent is the streams' contexts' parent. When ServeConn's
	// context cannot be cancelled, it is ctx without its cancellation:
	// the connection cancels each stream before ctx (see teardown), so
	// nothing need watch it. Otherwise it is ctx, whose end (ServeConn's
	// context's) the streams must see.
	streamParent context.Context
	remote       string
	tls          *tls.ConnectionState

	// reader
	br              *bufio.Reader
	fr              *http2.Framer
	rd              *h2frame.FrameReader // reads fr's frames, decoding header blocks
	canon           map[string]string    // lowercase wire name -> canonical key
	maxClientID     uint32               // the highest client stream opened
	sawSettings     bool
	unackedSettings int
	streamWin       int32 // our receive window per stream, as announced
	connWin         int32 // our receive window for the connection
	maxStreams      uint32

	mu          sync.Mutex
	streams     map[uint32]*stream
	handlers    int              // handler goroutines running
	unstarted   []*stream        // handlers waiting for one of those to end
	sendWin     int64            // the peer's connection window for our DATA
	initSendWin int64            // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame    int              // the peer's SETTINGS_MAX_FRAME_SIZE
	tableSize   int64            // the peer's SETTINGS_HEADER_TABLE_SIZE to apply, or -1
	recvWin     int64            // connection window the peer has left
	recvUnacked int64            // connection window consumed, not yet returned
	ctl         []byte           // control frames to write
	bodyBufs    h2frame.BodyBufs // request body buffers of ended streams, for new ones
	closed      bool             // the connection is done; nothing more is written
	goingAway   bool             // GOAWAY queued or sent: no new streams
	goAwayCode  http2.ErrCode
	closing     bool      // idle after GOAWAY: close once it is written
	idleSince   time.Time // when the last stream ended
	sendCond    sync.Cond // writers waiting for send window; L is &mu

	// wmu serializes writes to nc; the hpack encoder's state follows
	// the order of the header blocks on the wire, so it is used under
	// wmu too.
	wmu  sync.Mutex
	wq   h2frame.WriteQueue // frames to write, and the group commit
	henc *hpack.Encoder
	hbuf bytes.Buffer

	kick      chan struct{} // wakes the writer goroutine
	done      chan struct{} // closed when the connection ends
	wg        sync.WaitGroup
	idleTimer *time.Timer
}

// uncancelled is a context's values without its cancellation, as
// context.WithoutCancel's, but a pointer: the standard one is a struct
// that its Value method boxes into an interface on every lookup, an
// allocation per Value call on every stream context below it.
type uncancelled struct{ context.Context }

func (*uncancelled) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*uncancelled) Done() <-chan struct{}       { return nil }
func (*uncancelled) Err() error                  { return nil }

func newConn(s *Server, ctx context.Context, nc net.Conn, tlsState *tls.ConnectionState) *conn {
	c := &conn{
		s: s, nc: nc, tls: tlsState,
		remote:      nc.RemoteAddr().String(),
		streams:     make(map[uint32]*stream),
		sendWin:     initialWindow,
		initSendWin: initialWindow,
		maxFrame:    16384,
		tableSize:   -1,
		streamWin:   s.streamWindow(),
		connWin:     s.connWindow(),
		maxStreams:  s.maxStreams(),
		kick:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		canon:       make(map[string]string, 16),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.streamParent = c.ctx
	if ctx.Done() == nil {
		c.streamParent = &uncancelled{c.ctx}
	}
	c.recvWin = int64(c.connWin)
	c.sendCond.L = &c.mu
	c.wq.Init(&c.wmu)
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(nc)
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.MaxHeaderListSize = s.maxHeaderListSize()
	c.fr.SetMaxReadFrameSize(maxReadFrameSize)
	c.fr.SetReuseFrames()
	c.rd = h2frame.NewFrameReader(c.fr, c.br)
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

func (c *conn) release() {
	if c.br != nil {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.br = nil
	}
	c.cancel()
}

// serve runs the reader loop until the connection ends, then tears it
// down.
func (c *conn) serve() {
	defer c.teardown()
	// Our SETTINGS go first, before the preface is read, as net/http's
	// server does; nothing else can be writing yet.
	b := c.wq.Buf[:0]
	b = appendSettings(b,
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: maxReadFrameSize},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.maxStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.fr.MaxHeaderListSize},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.streamWin)},
	)
	if d := c.connWin - initialWindow; d > 0 {
		b = appendWindowUpdate(b, 0, uint32(d))
	}
	c.unackedSettings++
	c.wq.Buf = b[:0]
	d := c.s.ReadHeaderTimeout
	if d <= 0 {
		d = prefaceTimeout
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	if _, err := c.nc.Write(b); err != nil {
		return
	}
	var pre [len(clientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != clientPreface {
		return
	}
	c.mu.Lock()
	if !c.closing {
		// Shutdown may have set the closing deadline meanwhile: keep it.
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	go c.writeLoop()
	if c.s.IdleTimeout > 0 {
		c.idleSince = time.Now()
		c.idleTimer = time.AfterFunc(c.s.IdleTimeout, c.onIdle)
	}
	for {
		f, err := c.rd.ReadFrame()
		if err != nil {
			if !c.readError(err) {
				return
			}
			continue
		}
		if err := c.processFrame(f); err != nil {
			if !c.frameError(f, err) {
				return
			}
		}
	}
}

// readError handles an error from ReadFrame; it reports whether the loop
// goes on.
func (c *conn) readError(err error) bool {
	if err == http2.ErrFrameTooLarge {
		c.goAway(http2.ErrCodeFrameSize)
		return c.lingerAfterGoAway()
	}
	var se http2.StreamError
	if errors.As(err, &se) {
		c.resetStream(se.StreamID, se.Code)
		return true
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.s.logger().Debug("http2: connection error", "remote", c.remote, "err", err)
		c.goAway(http2.ErrCode(ce))
		return c.lingerAfterGoAway()
	}
	return false
}

// frameError handles an error processing f; it reports whether the loop
// goes on.
func (c *conn) frameError(f http2.Frame, err error) bool {
	switch e := err.(type) {
	case http2.StreamError:
		c.resetStream(e.StreamID, e.Code)
		return true
	case http2.ConnectionError:
		// Under mu: goAwayLocked reads maxClientID from other goroutines
		// (Shutdown, the idle timer, a handler's "Connection: close").
		c.mu.Lock()
		if id := f.Header().StreamID; id > c.maxClientID && id%2 == 1 {
			c.maxClientID = id
		}
		c.mu.Unlock()
		c.s.logger().Debug("http2: connection error", "remote", c.remote, "err", err)
		c.goAway(http2.ErrCode(e))
		return c.lingerAfterGoAway()
	}
	return false
}

// lingerAfterGoAway lets the peer read a GOAWAY sent for an error before
// the connection closes: reads go on (their frames discarded) for up to
// goAwayTimeout, so closing with unread input does not reset the
// connection under the GOAWAY.
func (c *conn) lingerAfterGoAway() bool {
	_ = c.nc.SetReadDeadline(time.Now().Add(goAwayTimeout))
	_ = c.nc.SetWriteDeadline(time.Now().Add(goAwayTimeout))
	c.flushCtl()
	for {
		if _, err := c.rd.ReadFrame(); err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				continue
			}
			return false
		}
	}
}

// teardown ends the connection: every stream fails, handlers are told,
// the socket closes, and, once the handlers are gone, the buffers go back.
func (c *conn) teardown() {
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		st.fail(errClientDisconnected)
	}
	clear(c.streams)
	for _, st := range c.unstarted {
		st.ctx.Cancel(nil)
	}
	c.unstarted = nil
	c.sendCond.Broadcast()
	c.mu.Unlock()
	close(c.done)
	c.cancel()
	c.nc.Close()
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.wg.Wait()
	c.release()
}

// processFrame applies one frame from the peer.
func (c *conn) processFrame(f http2.Frame) error {
	if !c.sawSettings {
		if _, ok := f.(*http2.SettingsFrame); !ok {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.sawSettings = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// After an error GOAWAY nothing more is processed; after a graceful
	// one, nothing for streams above the last one announced. DATA still
	// counts against (and returns) connection window (RFC 9113 6.8).
	if c.goingAway && (c.goAwayCode != http2.ErrCodeNo || f.Header().StreamID > c.maxClientID) {
		if df, ok := f.(*http2.DataFrame); ok {
			if int64(df.Length) > c.recvWin {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			c.recvWin -= int64(df.Length)
			c.returnConnWindowLocked(int64(df.Length))
		}
		return nil
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		if f.StreamID != 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.queueLocked(appendPing(c.ctl, true, f.Data))
		return nil
	case *http2.RSTStreamFrame:
		if c.idleLocked(f.StreamID) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if st := c.streams[f.StreamID]; st != nil {
			st.reset = true // the peer reset it: we send nothing more
			c.closeStreamLocked(st, http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
		}
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return nil
	case *http2.GoAwayFrame:
		c.startGracefulShutdownLocked()
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	default:
		// Unknown frame types are ignored (RFC 9113 4.1). A CONTINUATION
		// out of sequence is the Framer's error already.
		return nil
	}
}

// idleLocked reports whether stream id is in the idle state: never opened
// by the client (we open none).
func (c *conn) idleLocked(id uint32) bool {
	if id%2 == 1 {
		return id > c.maxClientID
	}
	return true
}

func (c *conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.unackedSettings--
		if c.unackedSettings < 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	// A setting may repeat; the last value counts (RFC 9113 6.5.3).
	// net/http's server refuses repeats; h2spec holds that against it.
	if f.NumSettings() > 100 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.tableSize = int64(s.Val)
		case http2.SettingInitialWindowSize:
			// Every open stream's window moves by the difference
			// (RFC 9113 6.9.2).
			growth := int64(s.Val) - c.initSendWin
			c.initSendWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += growth
				if st.sendWin > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.sendCond.Broadcast()
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.queueLocked(appendFrameHeader(c.ctl, 0, http2.FrameSettings, http2.FlagSettingsAck, 0))
	return nil
}

func (c *conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		c.sendWin += int64(f.Increment)
		if c.sendWin > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendCond.Broadcast()
		return nil
	}
	if c.idleLocked(f.StreamID) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil // closed, or half closed by us: allowed (RFC 9113 5.1)
	}
	st.sendWin += int64(f.Increment)
	if st.sendWin > maxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	c.sendCond.Broadcast()
	return nil
}

func (c *conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	if id == 0 || c.idleLocked(id) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	n := int64(f.Length) // padding included: it counts against the windows
	st := c.streams[id]
	if st == nil || st.state != stateOpen || st.gotTrailers || st.reset {
		// Not a stream that takes data. The connection window still
		// counts, and what it took is returned at once.
		if n > c.recvWin {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.recvWin -= n
		c.returnConnWindowLocked(n)
		if st != nil && st.reset {
			return nil // a reset is on its way already
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	data := f.Data()
	if st.declLen >= 0 && st.gotLen+int64(len(data)) > st.declLen {
		if n > c.recvWin {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.recvWin -= n
		c.returnConnWindowLocked(n)
		st.endBody(errors.New("http2: sender tried to send more than declared Content-Length"))
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if n > 0 {
		if n > c.recvWin {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		if n > st.recvWin {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
		}
		c.recvWin -= n
		st.recvWin -= n
		if len(data) > 0 {
			st.gotLen += int64(len(data))
			if st.bodyClosed {
				// The handler closed the body: the connection window
				// comes back, the stream's does not.
				c.returnConnWindowLocked(int64(len(data)))
			} else {
				if st.body == nil {
					st.body = c.bodyBufs.Get()
				}
				st.body = append(st.body, data...)
				st.rcond.Signal()
			}
		}
		if pad := n - int64(len(data)); pad > 0 {
			// Padding is never read: return it now.
			c.returnConnWindowLocked(pad)
			st.returnWindowLocked(pad)
		}
	}
	if f.StreamEnded() {
		st.endStream()
	}
	return nil
}

// processHeaders opens a stream, or takes a stream's trailers.
func (c *conn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 != 1 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st := c.streams[id]; st != nil {
		if st.reset {
			return nil
		}
		if st.state == stateHalfClosedRemote {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		}
		return c.processTrailers(st, f)
	}
	if id <= c.maxClientID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.maxClientID = id
	if f.HasPriority() && f.Priority.StreamDep == id {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if uint32(len(c.streams)) >= c.maxStreams {
		// REFUSED_STREAM rather than PROTOCOL_ERROR: the request was
		// not processed, and clients send it again.
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	st := newStream(c, id)
	if err := st.buildRequest(f); err != nil {
		st.free()
		return err
	}
	if f.StreamEnded() {
		st.state = stateHalfClosedRemote
		st.bodyErr = io.EOF
	}
	c.streams[id] = st
	if len(c.streams) == 1 && c.idleTimer != nil {
		c.idleSince = time.Time{}
	}
	if c.handlers >= int(c.maxStreams) {
		// Handlers of reset streams still running: wait for one, as
		// net/http's server, so rapid resets cannot pile them up.
		if len(c.unstarted) > 4*int(c.maxStreams) {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		c.unstarted = append(c.unstarted, st)
		return nil
	}
	c.startHandlerLocked(st)
	return nil
}

func (c *conn) processTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	if st.gotTrailers {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st.gotTrailers = true
	if !f.StreamEnded() {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	if len(f.PseudoFields()) > 0 {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	if st.reqTrailer != nil {
		for _, hf := range f.RegularFields() {
			key := c.canonicalHeader(hf.Name)
			if !validTrailerHeader(key) {
				return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
			}
			if st.trailer == nil {
				st.trailer = make(http.Header)
			}
			st.trailer[key] = append(st.trailer[key], hf.Value)
		}
	}
	st.endStream()
	return nil
}

func (c *conn) startHandlerLocked(st *stream) {
	c.handlers++
	c.wg.Add(1)
	c.s.workers.run(st)
}

// handlerDone is called by each handler goroutine at its end.
func (c *conn) handlerDone() {
	c.mu.Lock()
	c.handlers--
	for len(c.unstarted) > 0 && c.handlers < int(c.maxStreams) && !c.closed {
		st := c.unstarted[0]
		c.unstarted[0] = nil
		c.unstarted = c.unstarted[1:]
		c.startHandlerLocked(st)
	}
	c.maybeCloseLocked()
	c.mu.Unlock()
	c.wg.Done()
}

// resetStream sends RST_STREAM with code for stream id and closes it.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetStreamLocked(id, code)
}

func (c *conn) resetStreamLocked(id uint32, code http2.ErrCode) {
	if st := c.streams[id]; st != nil {
		if st.reset {
			return
		}
		st.reset = true
		c.closeStreamLocked(st, http2.StreamError{StreamID: id, Code: code})
	}
	c.queueLocked(appendRSTStream(c.ctl, id, code))
}

// closeStreamLocked removes st from the connection: its handler's context
// is cancelled, its body fails with err unless it ended, and what it
// buffered unread goes back to the connection window.
func (c *conn) closeStreamLocked(st *stream, err error) {
	if st.removed {
		return
	}
	st.removed = true
	delete(c.streams, st.id)
	if n := int64(len(st.body) - st.bodyOff); n > 0 {
		c.returnConnWindowLocked(n)
		if se, ok := err.(http2.StreamError); ok && se.Code != http2.ErrCodeNo {
			// Reset: nobody can answer this request any more, so its
			// unread body is dropped rather than held outside any
			// window while a slow handler runs or waits to start.
			st.body, st.bodyOff = nil, 0
		}
	}
	if st.bodyErr == nil {
		if se, ok := err.(http2.StreamError); ok && se.Code == http2.ErrCodeNo {
			err = errHandlerComplete
		}
		st.bodyErr = err
	}
	st.rcond.Broadcast()
	st.ctx.Cancel(nil)
	c.sendCond.Broadcast()
	if len(c.streams) == 0 {
		if c.idleTimer != nil {
			c.idleSince = time.Now()
		}
		c.maybeCloseLocked()
	}
}

// returnConnWindowLocked records n bytes of connection window consumed,
// and returns window to the peer once half of it is.
func (c *conn) returnConnWindowLocked(n int64) {
	c.recvUnacked += n
	if c.recvUnacked >= int64(c.connWin)/2 && !c.closed {
		c.queueLocked(appendWindowUpdate(c.ctl, 0, uint32(c.recvUnacked)))
		c.recvWin += c.recvUnacked
		c.recvUnacked = 0
	}
}

// queueLocked sets the control-frame queue to b (the queue with frames
// appended) and has them written.
func (c *conn) queueLocked(b []byte) {
	c.ctl = b
	if len(b) > maxQueuedControl {
		// The peer sends frames that need answers and reads none.
		c.closed = true
		go c.nc.Close()
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// writeLoop writes queued control frames, so the reader never blocks on
// the socket.
func (c *conn) writeLoop() {
	for {
		select {
		case <-c.kick:
			c.flushCtl()
		case <-c.done:
			return
		}
	}
}

// flushCtl writes the queued control frames, if any.
func (c *conn) flushCtl() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if len(c.ctl) == 0 {
		c.mu.Unlock()
		return
	}
	c.wq.Buf = append(c.wq.Buf, c.ctl...)
	c.ctl = c.ctl[:0]
	c.applyTableSizeLocked()
	c.mu.Unlock()
	c.writeLocked()
}

// applyTableSizeLocked applies the peer's header table size to the
// encoder; mu and wmu are held.
func (c *conn) applyTableSizeLocked() {
	if c.tableSize >= 0 {
		c.henc.SetMaxDynamicTableSize(uint32(c.tableSize))
		c.tableSize = -1
	}
}

// writeLocked writes the queued frames (h2frame.WriteQueue.Flush: when
// another goroutine is writing, it sends them with its next write); wmu
// is held, released during the write and held again on return. A failed
// write closes the connection, which ends the reader.
func (c *conn) writeLocked() error {
	err := c.wq.Flush(c.nc)
	if err != nil {
		c.nc.Close()
	}
	return err
}

// goAway queues GOAWAY with code; no new stream is taken after it.
func (c *conn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.goAwayLocked(code)
}

func (c *conn) goAwayLocked(code http2.ErrCode) {
	if c.goingAway && (code == http2.ErrCodeNo || c.goAwayCode != http2.ErrCodeNo) {
		return
	}
	c.goingAway = true
	c.goAwayCode = code
	c.queueLocked(appendGoAway(c.ctl, c.maxClientID, code))
}

func (c *conn) startGracefulShutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startGracefulShutdownLocked()
}

func (c *conn) startGracefulShutdownLocked() {
	c.goAwayLocked(http2.ErrCodeNo)
	c.maybeCloseLocked()
}

// maybeCloseLocked closes a connection that sent GOAWAY once it has no
// streams and no handlers: the writer sends the GOAWAY, and the reader
// waits up to goAwayTimeout for the peer to close first.
func (c *conn) maybeCloseLocked() {
	if !c.goingAway || c.closing || len(c.streams) > 0 || c.handlers > 0 || len(c.unstarted) > 0 {
		return
	}
	c.closing = true
	_ = c.nc.SetReadDeadline(time.Now().Add(goAwayTimeout))
}

// onIdle runs when the idle timer fires: a connection without streams
// for IdleTimeout is closed with GOAWAY; otherwise the timer is set for
// the rest of the time.
func (c *conn) onIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	idle := c.s.IdleTimeout
	if len(c.streams) == 0 && c.handlers == 0 && !c.idleSince.IsZero() {
		if left := idle - time.Since(c.idleSince); left > 0 {
			c.idleTimer.Reset(left)
			return
		}
		c.startGracefulShutdownLocked()
		return
	}
	c.idleTimer.Reset(idle)
}

// canonicalHeader returns the canonical key of a lowercase wire name,
// remembering the ones it computed.
func (c *conn) canonicalHeader(v string) string {
	if cv, ok := commonCanonical[v]; ok {
		return cv
	}
	if cv, ok := c.canon[v]; ok {
		return cv
	}
	cv := http.CanonicalHeaderKey(v)
	if len(c.canon) < 64 && len(v) < 64 {
		c.canon[v] = cv
	}
	return cv
}

// Frame encoding: frames are appended to byte slices, so a response's
// frames and the control frames queued meanwhile leave in one write.

func appendFrameHeader(b []byte, length int, t http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(flags),
		byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
}

func appendSettings(b []byte, settings ...http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		b = append(b, byte(s.ID>>8), byte(s.ID), byte(s.Val>>24), byte(s.Val>>16), byte(s.Val>>8), byte(s.Val))
	}
	return b
}

func appendWindowUpdate(b []byte, id, incr uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return append(b, byte(incr>>24), byte(incr>>16), byte(incr>>8), byte(incr))
}

func appendRSTStream(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return append(b, byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

func appendPing(b []byte, ack bool, data [8]byte) []byte {
	var fl http2.Flags
	if ack {
		fl = http2.FlagPingAck
	}
	b = appendFrameHeader(b, 8, http2.FramePing, fl, 0)
	return append(b, data[:]...)
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, http2.FrameGoAway, 0, 0)
	return append(b, byte(last>>24), byte(last>>16), byte(last>>8), byte(last),
		byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

// appendHeaderBlock appends block as a HEADERS frame and as many
// CONTINUATION frames as maxFrame requires.
func appendHeaderBlock(b []byte, id uint32, block []byte, endStream bool, maxFrame int) []byte {
	first := true
	for {
		frag := block
		if len(frag) > maxFrame {
			frag = frag[:maxFrame]
		}
		block = block[len(frag):]
		var fl http2.Flags
		t := http2.FrameContinuation
		if first {
			t = http2.FrameHeaders
			if endStream {
				fl |= http2.FlagHeadersEndStream
			}
		}
		if len(block) == 0 {
			fl |= http2.FlagHeadersEndHeaders
		}
		b = appendFrameHeader(b, len(frag), t, fl, id)
		b = append(b, frag...)
		first = false
		if len(block) == 0 {
			return b
		}
	}
}
