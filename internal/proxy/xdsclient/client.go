package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/proxy/route"
)

// Defaults for Options.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second

	// A response that was NACKed and comes back unchanged (go-control-plane's
	// snapshot cache resends the current snapshot to any request whose
	// version differs from it, and a NACK carries the previous version) is
	// NACKed again only after this delay, doubling up to nackMaxDelay, so a
	// bad snapshot does not turn into a hot loop between proxy and server.
	nackBaseDelay = time.Second
	nackMaxDelay  = 8 * time.Second

	// streamEndWait is how long the client waits, after a Send failed,
	// for the stream's error before it gives the stream up.
	streamEndWait = time.Second

	// maxMessageSize bounds one xDS response; large meshes exceed gRPC's 4 MiB
	// default in CDS and EDS.
	maxMessageSize = 64 << 20
)

// Options configure a Client.
type Options struct {
	// ControlPlane is the ADS server's address, host:port.
	ControlPlane string
	// Node describes this proxy to the control plane.
	Node NodeInfo
	// OnUpdate receives the full last good set after every accepted
	// response, in order, from the client's goroutine; the next response is
	// not read until it returns, and its ACK is sent after it returns, so an
	// ACK means "applied". It must not block for long and must not modify
	// the Resources.
	OnUpdate func(Resources)
	// Logger is the client's component logger.
	Logger *slog.Logger
	// Conn is the connection to the control plane, made with Dial and
	// shared with the identity agent; the client does not close it. Nil
	// means the client dials ControlPlane itself with DialOptions.
	Conn *grpc.ClientConn
	// DialOptions are appended to the client's gRPC dial options when it
	// dials itself. Without transport credentials among them the connection
	// is plaintext.
	DialOptions []grpc.DialOption
	// MinBackoff and MaxBackoff bound the jittered exponential delay between
	// reconnection attempts; zero means the defaults, 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// Client is an ADS state-of-the-world client. Create it with New, run it
// with Run; Status may be called from any goroutine at any time.
type Client struct {
	opts Options
	log  *slog.Logger
	node *corepb.Node

	// Owned by the Run goroutine.
	sets     [numTypes]any // last good map per type
	accepted [numTypes]bool
	nacked   [numTypes]nackState
	// trimmed is set for EDS (RDS) when an accepted CDS (LDS) response
	// dropped some of its resources since its last accepted response
	// (merge.go, resumeVersion).
	trimmed [numTypes]bool

	mu     sync.Mutex // guards status
	status Status
}

type nackState struct {
	version string // the response version last NACKed; "" after an ACK
	repeats int    // how many times in a row that version came back
}

// Status is the client's state for the admin endpoint and proxy-status.
type Status struct {
	NodeID       string `json:"node_id"`
	ControlPlane string `json:"control_plane"`
	// Connected is true while an ADS stream is open and has delivered a
	// response.
	Connected   bool         `json:"connected"`
	StreamsOpen int          `json:"streams_opened"`
	LastError   string       `json:"last_stream_error,omitempty"`
	Types       []TypeStatus `json:"types"`
}

// TypeStatus is the state of one resource type.
type TypeStatus struct {
	Type    string `json:"type"` // CDS, EDS, LDS or RDS
	TypeURL string `json:"type_url"`
	// VersionReceived is the version of the last response, accepted or not.
	VersionReceived string `json:"version_received"`
	// VersionAcked is the version of the set in use.
	VersionAcked string    `json:"version_acked"`
	Nonce        string    `json:"nonce"`
	Resources    int       `json:"resources"`
	Accepted     int       `json:"responses_accepted"`
	Rejected     int       `json:"responses_rejected"`
	LastNACK     string    `json:"last_nack,omitempty"`
	LastNACKAt   time.Time `json:"last_nack_at,omitzero"`
	LastUpdateAt time.Time `json:"last_update_at,omitzero"`
}

// New validates opts and returns a client that has not connected yet.
func New(opts Options) (*Client, error) {
	if opts.ControlPlane == "" {
		return nil, errors.New("xdsclient: control plane address is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Node.ID == "" {
		opts.Node.ID = NewNodeID(opts.Node.Service, opts.Node.Namespace)
	}
	node, err := opts.Node.proto()
	if err != nil {
		return nil, err
	}
	c := &Client{opts: opts, log: opts.Logger, node: node}
	c.status = Status{NodeID: node.GetId(), ControlPlane: opts.ControlPlane, Types: make([]TypeStatus, numTypes)}
	for t := range numTypes {
		c.status.Types[t] = TypeStatus{Type: t.String(), TypeURL: t.URL()}
	}
	return c, nil
}

// NodeID is the node ID the client sends.
func (c *Client) NodeID() string { return c.node.GetId() }

// Status returns a copy of the client's current state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Types = append([]TypeStatus(nil), c.status.Types...)
	return s
}

// Run connects to the control plane and keeps an ADS stream open until ctx
// ends, reconnecting forever with jittered exponential backoff. It returns
// nil when ctx ends, or an error if the gRPC client cannot be created at all.
// Run must be called at most once.
func (c *Client) Run(ctx context.Context) error {
	conn := c.opts.Conn
	if conn == nil {
		dopts := append(append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
			channelOptions(c.opts.MinBackoff, c.opts.MaxBackoff)...), c.opts.DialOptions...)
		var err error
		if conn, err = grpc.NewClient(c.opts.ControlPlane, dopts...); err != nil {
			return fmt.Errorf("creating xDS client for %s: %w", c.opts.ControlPlane, err)
		}
		defer conn.Close()
	}
	ads := discoverypb.NewAggregatedDiscoveryServiceClient(conn)

	failures := 0
	for {
		healthy, err := c.runStream(ctx, ads)
		if ctx.Err() != nil {
			return nil
		}
		if healthy {
			failures = 0 // the server answered: start the backoff over
		}
		delay := backoffDelay(c.opts.MinBackoff, c.opts.MaxBackoff, failures)
		failures++
		c.mu.Lock()
		c.status.Connected = false
		c.status.LastError = err.Error()
		c.mu.Unlock()
		c.log.Warn("ADS stream ended; serving the last good configuration", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoffDelay is min*2^failures capped at max, with "equal jitter": a
// uniformly random point in the upper half, so that proxies that lost the
// same control plane do not all come back at the same instant.
func backoffDelay(minDelay, maxDelay time.Duration, failures int) time.Duration {
	d := minDelay
	for i := 0; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}

// runStream runs one ADS stream until it fails or ctx ends. healthy reports
// whether the server sent at least one response.
func (c *Client) runStream(ctx context.Context, ads discoverypb.AggregatedDiscoveryServiceClient) (healthy bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below: the receiver exits once the stream is cancelled
	defer cancel()

	stream, err := ads.StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("opening ADS stream: %w", err)
	}
	c.mu.Lock()
	c.status.StreamsOpen++
	c.mu.Unlock()

	// gRPC allows one sender and one receiver at a time; this goroutine
	// sends, the receiver below only receives.
	responses := make(chan *discoverypb.DiscoveryResponse)
	recvErr := make(chan error, 1)
	wg.Go(func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case responses <- resp:
			case <-sctx.Done():
				return
			}
		}
	})
	// send sends one request. A failed Send only says io.EOF; the stream's
	// real error comes from Recv, so report that one, if it comes soon:
	// grpc-go's Recv may not return after a Send failed (an attempt
	// retried on a connection cut again), and the stream is over for us
	// either way. The receiver may hold a response it read before the
	// stream ended, which nobody will apply now: take it, or it would wait
	// to hand it over and never report the error.
	send := func(req *discoverypb.DiscoveryRequest) error {
		err := stream.Send(req)
		if errors.Is(err, io.EOF) {
			wait := time.NewTimer(streamEndWait)
			defer wait.Stop()
			for waiting := true; waiting; {
				select {
				case err = <-recvErr:
					waiting = false
				case <-responses:
				case <-wait.C:
					waiting = false
				case <-ctx.Done():
					waiting = false
				}
			}
		}
		return err
	}

	// Subscribe to everything, in the contract's order. The node goes in
	// the first request only; versions we hold let a server that already
	// sent them skip resending (resumeVersion).
	for t := range numTypes {
		req := &discoverypb.DiscoveryRequest{TypeUrl: t.URL(), VersionInfo: c.resumeVersion(t)}
		if t == 0 {
			req.Node = c.node
		}
		if err := send(req); err != nil {
			return false, fmt.Errorf("subscribing to %s: %w", t, err)
		}
	}

	// Delayed NACKs (see nackBaseDelay) come back through here; at most one
	// is pending per type, since the server sends nothing more of a type
	// until it gets our answer.
	delayed := make(chan *discoverypb.DiscoveryRequest)
	var pending [numTypes]*time.Timer
	defer func() {
		for _, t := range pending {
			if t != nil {
				t.Stop()
			}
		}
	}()
	// A new stream (perhaps to a new server) gets a prompt first NACK.
	c.nacked = [numTypes]nackState{}

	for {
		select {
		case <-ctx.Done():
			return healthy, ctx.Err()
		case err := <-recvErr:
			return healthy, fmt.Errorf("receiving from ADS stream: %w", err)
		case resp := <-responses:
			if !healthy {
				healthy = true
				c.mu.Lock()
				c.status.Connected = true
				c.status.LastError = ""
				c.mu.Unlock()
				c.log.Info("ADS stream established", "control_plane", c.opts.ControlPlane, "node", c.node.GetId())
			}
			req, delay := c.handle(resp)
			if req == nil {
				continue
			}
			if delay > 0 {
				t, _ := typeOf(req.GetTypeUrl())
				if pending[t] != nil {
					pending[t].Stop()
				}
				pending[t] = time.AfterFunc(delay, func() {
					select {
					case delayed <- req:
					case <-sctx.Done():
					}
				})
				continue
			}
			if err := send(req); err != nil {
				return healthy, fmt.Errorf("sending to ADS stream: %w", err)
			}
		case req := <-delayed:
			if err := send(req); err != nil {
				return healthy, fmt.Errorf("sending to ADS stream: %w", err)
			}
		}
	}
}

func (c *Client) ackedVersion(t Type) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.Types[t].VersionAcked
}

// handle decodes one response, applies it if valid, and returns the ACK or
// NACK to send, and how long to hold it back.
func (c *Client) handle(resp *discoverypb.DiscoveryResponse) (*discoverypb.DiscoveryRequest, time.Duration) {
	t, ok := typeOf(resp.GetTypeUrl())
	if !ok {
		// We never subscribed to it; there is no subscription to answer.
		c.log.Warn("ignoring response of an unsubscribed type", "type_url", resp.GetTypeUrl())
		return nil, 0
	}
	version, nonce := resp.GetVersionInfo(), resp.GetNonce()
	set, err := decode(t, resp.GetResources())
	now := time.Now()

	if err == nil {
		dropped := c.install(t, set)
		c.accepted[t] = true
		c.nacked[t] = nackState{}
		c.mu.Lock()
		ts := &c.status.Types[t]
		ts.VersionReceived, ts.VersionAcked, ts.Nonce = version, version, nonce
		ts.Accepted++
		ts.LastUpdateAt = now
		// What the client holds, which after a partial EDS or RDS
		// response is more than the response carried.
		for u := range numTypes {
			c.status.Types[u].Resources = setLen(c.sets[u])
		}
		c.mu.Unlock()
		c.log.Info("xDS response accepted", "type", t.String(), "version", version, "resources", len(resp.GetResources()),
			"held", setLen(c.sets[t]), "dropped_unreferenced", dropped)
		if c.opts.OnUpdate != nil {
			c.opts.OnUpdate(c.resources())
		}
		return &discoverypb.DiscoveryRequest{TypeUrl: t.URL(), VersionInfo: version, ResponseNonce: nonce}, 0
	}

	msg := err.Error()
	c.mu.Lock()
	ts := &c.status.Types[t]
	ts.VersionReceived, ts.Nonce = version, nonce
	ts.Rejected++
	ts.LastNACK, ts.LastNACKAt = msg, now
	acked := ts.VersionAcked
	c.mu.Unlock()

	var delay time.Duration
	ns := &c.nacked[t]
	if ns.version == version && version != "" {
		ns.repeats++
		delay = min(nackBaseDelay<<min(ns.repeats-1, 10), nackMaxDelay)
	} else {
		*ns = nackState{version: version}
	}
	if ns.repeats == 0 {
		c.log.Warn("xDS response rejected; keeping the last good configuration",
			"type", t.String(), "version", version, "kept_version", acked, "err", msg)
	} else {
		c.log.Debug("same xDS response rejected again", "type", t.String(), "version", version, "repeats", ns.repeats, "nack_delay", delay)
	}
	return &discoverypb.DiscoveryRequest{
		TypeUrl:       t.URL(),
		VersionInfo:   acked, // the version still in use, as the protocol asks
		ResponseNonce: nonce,
		ErrorDetail:   &statuspb.Status{Code: int32(codes.InvalidArgument), Message: msg},
	}, delay
}

// resources assembles the current last good sets. It copies no map: every
// accepted response installs new ones (merge.go) and never modifies a map
// handed out before.
func (c *Client) resources() Resources {
	r := Resources{Versions: make(map[string]string, numTypes), Complete: true}
	r.Clusters, _ = c.sets[TypeCluster].(map[string]*Cluster)
	r.Endpoints, _ = c.sets[TypeEndpoints].(map[string]*Endpoints)
	r.Listeners, _ = c.sets[TypeListener].(map[string]*Listener)
	r.Routes, _ = c.sets[TypeRoute].(map[string]*route.Table)
	r.Secrets, _ = c.sets[TypeSecret].(map[string]*Secret)
	c.mu.Lock()
	for t := range numTypes {
		r.Versions[t.String()] = c.status.Types[t].VersionAcked
		if t < numCoreTypes {
			r.Complete = r.Complete && c.accepted[t]
		}
	}
	c.mu.Unlock()
	return r
}
