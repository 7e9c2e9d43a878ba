// Package xds serves the mesh to proxies over ADS: it registers each proxy's
// workload when its stream opens, translates each mesh snapshot once for
// the whole mesh and then each proxy's own part, serves the result through
// go-control-plane's ADS server with a version per type and proxy, and
// tracks what each proxy ACKed or NACKed.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/ca"
	"github.com/weft-mesh/weft/internal/mesh"
)

// Registrar records a connected proxy's workload in the registry. Register
// is called once per stream, from the stream's goroutine; release is called
// when the stream ends, after which the registration may linger for the
// registry's grace period.
type Registrar interface {
	Register(ctx context.Context, w *mesh.Workload) (release func(), err error)
}

// Authenticator checks the credentials of a gRPC call to the xDS port.
// Authenticate is called once per call (each ADS stream, each CA request),
// from the call's goroutine, before the call runs; it returns the identity
// the call proves, or an error saying why it proves none (the call then
// ends with Unauthenticated and that reason).
type Authenticator interface {
	Authenticate(ctx context.Context) (ca.Identity, error)
}

// Options configures a Server.
type Options struct {
	Logger    *slog.Logger
	Registrar Registrar
	// Authenticator, when set, guards every call on the server: ADS and
	// the services registered with RegisterService. The verified identity
	// is in each call's context (ca.FromContext), and an ADS stream whose
	// node metadata names another namespace or service account than that
	// identity is refused with PermissionDenied. Nil accepts every call
	// unauthenticated: for tests only.
	Authenticator Authenticator
	// ServerOptions are added to the gRPC server's, e.g. TLS credentials.
	ServerOptions []grpc.ServerOption
}

// Server is the ADS server. Create it with New, feed it mesh snapshots with
// Update, and serve gRPC with Serve.
type Server struct {
	log       *slog.Logger
	registrar Registrar
	auth      Authenticator
	grpc      *grpc.Server

	// pushMu serialises Update. A proxy never gets an older snapshot
	// after a newer one all the same: each push carries the generation
	// of its snapshot, and older ones are dropped (proxyState.gen).
	pushMu sync.Mutex

	mu sync.Mutex
	// config is the newest snapshot, translated; nil before the first,
	// or when its translation failed (proxies keep what they have).
	config  *meshConfig
	gen     uint64                // generation of the newest snapshot
	streams map[int64]*proxyState // by stream ID, once the node is known
	proxies map[string]*proxyState
	// superseded are the streams whose proxy opened a newer one before
	// they closed (connect); their requests end them.
	superseded map[int64]struct{}
	// callers holds the verified identity of each open stream, from its
	// opening until it closes, when an Authenticator is set.
	callers map[int64]ca.Identity
}

// proxyState is one connected proxy. The fields below release are
// guarded by Server.mu.
type proxyState struct {
	workload    *mesh.Workload
	identity    string // the SPIFFE ID its token proved; empty without authentication
	streamID    int64
	connectedAt time.Time
	release     func()
	// sentByNonce remembers which version each response carried, so an ACK
	// or NACK can be tied to it.
	sentByNonce map[string]string
	// partialSotW is set when the node declares featurePartialSotW: its
	// wildcard EDS subscription is sent only what changed (partial.go).
	partialSotW bool
	// legacyWildcardAll is set for weft-proxy: its empty resource_names
	// subscribe to every resource of every type (legacyWildcard).
	legacyWildcardAll bool
	// gen is the generation of the snapshot xds was built from.
	gen uint64
	xds [numTypes]typeState
}

// TypeStatus is what one proxy has of one xDS type, in mesh versions
// (store revisions). A type's xDS version is the revision at which the
// proxy's configuration of that type last changed, so after a change that
// leaves the type as it was, the proxy is not sent it again: a version
// equal to the current configuration's is reported as the newest
// snapshot's, the configuration the proxy has being that snapshot's too.
// A proxy is therefore in sync with revision N for a type once Acked is
// N or later.
type TypeStatus struct {
	// Sent is the version of the last response sent.
	Sent string `json:"sent"`
	// Acked is the version of the last response accepted.
	Acked string `json:"acked"`
	// NackVersion and NackMessage are those of the last rejection.
	NackVersion string `json:"nackVersion,omitempty"`
	NackMessage string `json:"nackMessage,omitempty"`
}

// ProxyStatus describes one connected proxy for `weft proxy-status`.
type ProxyStatus struct {
	ID             string `json:"id"`
	Service        string `json:"service"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	// Identity is the SPIFFE ID the proxy's token proved.
	Identity    string                 `json:"identity,omitempty"`
	Labels      map[string]string      `json:"labels,omitempty"`
	Address     string                 `json:"address"`
	ConnectedAt time.Time              `json:"connectedAt"`
	XDS         map[string]*TypeStatus `json:"xds"`
}

// TypeNames are the short names status uses for xDS type URLs, in push order.
var TypeNames = []struct{ URL, Short string }{
	{resource.ClusterType, "CDS"},
	{resource.EndpointType, "EDS"},
	{resource.ListenerType, "LDS"},
	{resource.RouteType, "RDS"},
	{resource.SecretType, "SDS"},
}

func shortType(url string) string {
	for _, t := range TypeNames {
		if t.URL == url {
			return t.Short
		}
	}
	return url
}

// New returns a Server. ctx bounds the lifetime of the go-control-plane
// server's background work.
func New(ctx context.Context, opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		log:        logger,
		registrar:  opts.Registrar,
		auth:       opts.Authenticator,
		streams:    map[int64]*proxyState{},
		proxies:    map[string]*proxyState{},
		superseded: map[int64]struct{}{},
		callers:    map[int64]ca.Identity{},
	}
	xdsServer := serverv3.NewServer(ctx, adsCache{s}, serverv3.CallbackFuncs{
		StreamOpenFunc:      s.onStreamOpen,
		StreamRequestFunc:   s.onStreamRequest,
		StreamResponseFunc:  s.onStreamResponse,
		StreamClosedFunc:    s.onStreamClosed,
		DeltaStreamOpenFunc: func(context.Context, int64, string) error { return errNoDelta },
	}, sotw.WithOrderedADS())
	sopts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if s.auth != nil {
		sopts = append(sopts, grpc.ChainUnaryInterceptor(s.authUnary), grpc.ChainStreamInterceptor(s.authStream))
	}
	// After authentication: only streams that got in take send slots.
	sopts = append(sopts, grpc.ChainStreamInterceptor(newSendLimiter(maxSendsInFlight).intercept),
		// Responses go out from the shared, pre-encoded resources (codec.go).
		grpc.ForceServerCodecV2(newCodec()))
	s.grpc = grpc.NewServer(append(sopts, opts.ServerOptions...)...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.grpc, xdsServer)
	return s
}

// errNoDelta refuses incremental xDS, which weft does not serve yet.
var errNoDelta = status.Error(codes.Unimplemented, "weft serves state-of-the-world ADS only, not delta xDS")

// RegisterService registers another gRPC service (the CA) on the xDS
// port, behind the same authentication. Call it before Serve.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

// authenticate runs the Authenticator and returns ctx with the caller's
// identity, or an Unauthenticated status.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	id, err := s.auth.Authenticate(ctx)
	if err != nil {
		addr := ""
		if p, ok := peer.FromContext(ctx); ok {
			addr = p.Addr.String()
		}
		s.log.Warn("refused unauthenticated call", "method", method, "peer", addr, "err", err)
		return nil, status.Error(codes.Unauthenticated, "authenticate: "+err.Error())
	}
	return ca.NewContext(ctx, id), nil
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

// authedStream is a server stream whose context carries the caller.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// onStreamOpen remembers the identity behind a new ADS stream.
func (s *Server) onStreamOpen(ctx context.Context, streamID int64, _ string) error {
	if s.auth == nil {
		return nil
	}
	id, ok := ca.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no verified token on this stream")
	}
	s.mu.Lock()
	s.callers[streamID] = id
	s.mu.Unlock()
	return nil
}

// Serve serves ADS on lis until Stop.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve xds: %w", err)
	}
	return nil
}

// Stop closes every stream and the listener.
func (s *Server) Stop() { s.grpc.Stop() }

// Update publishes a new mesh snapshot to every connected proxy. It
// translates and marshals what all proxies share once, then each proxy's
// own part, on every core; a proxy is sent only the types whose
// configuration changed. When the snapshot cannot be translated, proxies
// keep the configuration they have.
func (s *Server) Update(snap *mesh.Snapshot) {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	prev := s.config
	s.mu.Unlock()
	mc, err := newMeshConfig(snap, prev)
	if err != nil {
		s.log.Error("translate failed; proxies keep their previous config", "version", snap.Version, "err", err)
	}
	s.mu.Lock()
	s.gen++
	if mc != nil {
		mc.gen = s.gen
	}
	s.config = mc
	proxies := make([]*proxyState, 0, len(s.proxies))
	for _, p := range s.proxies {
		proxies = append(proxies, p)
	}
	s.mu.Unlock()
	if mc == nil {
		return
	}
	work := make(chan *proxyState)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(proxies)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				s.push(mc, p)
			}
		}()
	}
	for _, p := range proxies {
		work <- p
	}
	close(work)
	wg.Wait()
}

// push builds p's configuration of mc and answers the proxy's parked
// requests for the types that changed. Safe from many goroutines; a push
// of an older snapshot than p has is dropped.
func (s *Server) push(mc *meshConfig, p *proxyState) {
	parts, err := mc.proxyConfig(p.workload)
	if err != nil {
		s.log.Error("translate failed; proxy keeps its previous config", "proxy", p.workload.ID, "version", mc.version, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.gen >= mc.gen {
		return
	}
	p.gen = mc.gen
	for ti := range p.xds {
		ts := &p.xds[ti]
		d := digestOf(parts[ti])
		if !ts.ready || d != ts.digest {
			ts.ready, ts.digest, ts.version = true, d, mc.version
		}
		// Equal content or not, hold the new snapshot's sets, so the old
		// snapshot can be freed.
		ts.parts, ts.meshVersion = parts[ti], mc.version
		if w := ts.watch; w != nil && w.wants(ti, ts) {
			ts.watch = nil
			s.respondLocked(p, ts, w)
		}
	}
}

func (s *Server) onStreamRequest(streamID int64, req *discoverygrpc.DiscoveryRequest) error {
	s.mu.Lock()
	p := s.streams[streamID]
	_, superseded := s.superseded[streamID]
	s.mu.Unlock()
	if superseded {
		// A request the proxy sent before it reconnected, read late: the
		// proxy is served on its new stream. Connecting this one again
		// would take the proxy from the new stream, which would get no
		// more responses (and the new stream's end would then drop the
		// registration of a connected proxy).
		return status.Error(codes.Aborted, "this proxy has opened a newer stream")
	}
	if p == nil {
		var err error
		if p, err = s.connect(streamID, req.GetNode()); err != nil {
			return err
		}
	}
	ti := typeIndex(req.GetTypeUrl())
	if ti < 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := &p.xds[ti]
	ts.req = req
	if req.GetResponseNonce() == "" {
		// A stream's first request of a type carries the version the
		// proxy holds, accepted on an earlier stream (perhaps from an
		// earlier control plane). When it is the current version nothing
		// is sent, so count it as sent and ACKed: status then shows the
		// proxy in sync.
		if v := req.GetVersionInfo(); v != "" && ts.sent == "" && ts.acked == "" {
			ts.sent, ts.acked = v, v
		}
		return nil
	}
	if detail := req.GetErrorDetail(); detail != nil {
		ts.nackVersion = p.sentByNonce[req.GetResponseNonce()]
		ts.nackMessage = detail.GetMessage()
		s.log.Warn("proxy rejected config", "proxy", p.workload.ID, "type", shortType(req.GetTypeUrl()), "version", ts.nackVersion, "reason", detail.GetMessage())
		// A NACK names the last good version, which differs from the
		// current one, so the cache would resend the rejected
		// configuration at once, forever. Park the watch on the rejected
		// version instead: the next change to this type gets a new
		// version and is pushed.
		if ts.nackVersion != "" {
			req.VersionInfo = ts.nackVersion
		}
		// The proxy kept what it had before the rejected response, which
		// the server no longer knows: the next response carries
		// everything (partial.go).
		if _, ours := p.sentByNonce[req.GetResponseNonce()]; ours {
			ts.held = nil
		}
	} else {
		ts.acked = req.GetVersionInfo()
	}
	delete(p.sentByNonce, req.GetResponseNonce())
	return nil
}

// connect registers the proxy behind a new stream and gives it its first
// snapshot, before go-control-plane opens the stream's first watch.
func (s *Server) connect(streamID int64, node *corev3.Node) (*proxyState, error) {
	w, err := WorkloadFromNode(node)
	if err != nil {
		s.log.Warn("rejected proxy", "node", node.GetId(), "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var identity string
	if s.auth != nil {
		s.mu.Lock()
		id, ok := s.callers[streamID]
		s.mu.Unlock()
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "no verified token on this stream")
		}
		if id.Namespace != w.Namespace || id.ServiceAccount != w.ServiceAccount {
			err := fmt.Errorf("the token proves %s but the node metadata claims namespace %q, service account %q: "+
				"start the proxy with --namespace %s --service-account %s, or with a token for its identity",
				id, w.Namespace, w.ServiceAccount, id.Namespace, id.ServiceAccount)
			s.log.Warn("rejected proxy", "node", w.ID, "err", err)
			return nil, status.Error(codes.PermissionDenied, err.Error())
		}
		identity = id.SpiffeID()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release := func() {}
	if s.registrar != nil {
		if release, err = s.registrar.Register(ctx, w); err != nil {
			s.log.Error("register workload", "proxy", w.ID, "err", err)
			return nil, status.Error(codes.Unavailable, "register workload: "+err.Error())
		}
	}
	p := &proxyState{
		workload:          w,
		identity:          identity,
		streamID:          streamID,
		connectedAt:       time.Now(),
		release:           release,
		sentByNonce:       map[string]string{},
		partialSotW:       slices.Contains(node.GetClientFeatures(), featurePartialSotW),
		legacyWildcardAll: node.GetUserAgentName() == "" || node.GetUserAgentName() == "weft-proxy",
	}
	s.mu.Lock()
	if old := s.proxies[w.ID]; old != nil && old.streamID != streamID {
		// The same proxy reconnected before its old stream was reaped.
		delete(s.streams, old.streamID)
		s.superseded[old.streamID] = struct{}{}
		defer old.release()
	}
	s.streams[streamID] = p
	s.proxies[w.ID] = p
	// An Update that starts after this includes p; one that published
	// before it is in mc. Either way p gets the newest snapshot.
	mc := s.config
	s.mu.Unlock()
	s.log.Info("proxy connected", "proxy", w.ID, "service", w.Service, "namespace", w.Namespace, "service_account", w.ServiceAccount, "inbound", w.InboundAddr)
	if mc != nil {
		s.push(mc, p)
	}
	return p, nil
}

func (s *Server) onStreamResponse(_ context.Context, streamID int64, req *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.streams[streamID]
	if p == nil {
		return
	}
	if ti := typeIndex(resp.GetTypeUrl()); ti >= 0 {
		p.xds[ti].sent = resp.GetVersionInfo()
	}
	p.sentByNonce[resp.GetNonce()] = resp.GetVersionInfo()
}

func (s *Server) onStreamClosed(streamID int64, _ *corev3.Node) {
	s.mu.Lock()
	p := s.streams[streamID]
	delete(s.streams, streamID)
	delete(s.callers, streamID)
	delete(s.superseded, streamID)
	if p != nil && s.proxies[p.workload.ID] == p {
		delete(s.proxies, p.workload.ID)
	}
	s.mu.Unlock()
	if p == nil {
		return
	}
	s.log.Info("proxy disconnected", "proxy", p.workload.ID)
	p.release()
}

// status reports ts in mesh versions (see TypeStatus); nil when nothing
// was sent or answered yet.
func (ts *typeState) status() *TypeStatus {
	if ts.sent == "" && ts.acked == "" && ts.nackMessage == "" {
		return nil
	}
	current := func(v string) string {
		if v != "" && v == ts.version {
			return ts.meshVersion
		}
		return v
	}
	return &TypeStatus{Sent: current(ts.sent), Acked: current(ts.acked), NackVersion: current(ts.nackVersion), NackMessage: ts.nackMessage}
}

// Status lists the connected proxies, sorted by ID.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.proxies))
	for _, p := range s.proxies {
		st := ProxyStatus{
			ID:             p.workload.ID,
			Service:        p.workload.Service,
			Namespace:      p.workload.Namespace,
			ServiceAccount: p.workload.ServiceAccount,
			Identity:       p.identity,
			Labels:         p.workload.Labels,
			Address:        p.workload.InboundAddr,
			ConnectedAt:    p.connectedAt,
			XDS:            map[string]*TypeStatus{},
		}
		for ti := range p.xds {
			if ts := p.xds[ti].status(); ts != nil {
				st.XDS[TypeNames[ti].Short] = ts
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
