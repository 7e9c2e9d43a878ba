package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/proxy/xdsclient"
)

// newAdminServer builds the admin server: loopback-only endpoints for
// operators and for the health checks of whatever runs the proxy.
//
//	GET /healthz/ready  200 once the first full configuration is in, 503 before and while draining
//	GET /config_dump    JSON: node, xDS status per type, the compiled configuration
//	GET /stats          counters, one "name value" per line
//	GET /debug/pprof/   Go's profiles (CPU, heap, allocations, goroutines) and execution trace, as Envoy's admin offers its profilers
func (p *Proxy) newAdminServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", p.handleReady)
	mux.HandleFunc("GET /config_dump", p.handleConfigDump)
	mux.HandleFunc("GET /stats", p.handleStats)
	// Profiles of the running sidecar, for the benchmark harness and for
	// operators chasing a slow or fat proxy. The admin address is loopback
	// only (Options.validate).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "weft-proxy admin\n  /healthz/ready\n  /config_dump\n  /stats\n  /debug/pprof/\n")
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
}

func (p *Proxy) handleReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	ready, reason := p.readiness()
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, reason+"\n")
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// readiness says whether the proxy is ready to serve, and if not, why.
func (p *Proxy) readiness() (ready bool, reason string) {
	switch {
	case p.draining.Load():
		return false, "draining"
	case p.cfg.Load() == nil:
		return false, "not ready: no configuration received from the control plane yet"
	case p.agent != nil && p.agent.Certificate() == nil:
		msg := "not ready: no workload certificate from the control plane yet"
		if e := p.agent.Status().LastError; e != "" {
			msg += ": " + e
		}
		return false, msg
	}
	return true, ""
}

// configDump is the /config_dump document.
type configDump struct {
	Node struct {
		ID             string            `json:"id"`
		Service        string            `json:"service"`
		Namespace      string            `json:"namespace"`
		ServiceAccount string            `json:"service_account"`
		Labels         map[string]string `json:"labels"`
		ServicePort    int               `json:"service_port"`
		AppAddr        string            `json:"app_addr"`
		InboundAddr    string            `json:"inbound_addr"`
		OutboundAddr   string            `json:"outbound_addr"`
		AdminAddr      string            `json:"admin_addr"`
	} `json:"node"`
	Ready    bool             `json:"ready"`
	Draining bool             `json:"draining"`
	XDS      xdsclient.Status `json:"xds"`
	// Identity is the identity agent's state; null without a token.
	Identity *identity.Status `json:"identity"`
	// Compiled is the configuration requests are served with; null before
	// the first full configuration.
	Compiled *compiled `json:"compiled"`
}

func (p *Proxy) handleConfigDump(w http.ResponseWriter, _ *http.Request) {
	var d configDump
	a := p.Addrs()
	d.Node.ID = p.xds.NodeID()
	d.Node.Service, d.Node.Namespace, d.Node.Labels = p.opts.Service, p.opts.Namespace, p.opts.Labels
	d.Node.ServicePort, d.Node.AppAddr = p.opts.ServicePort, p.opts.AppAddr
	d.Node.InboundAddr, d.Node.OutboundAddr, d.Node.AdminAddr = a.Inbound, a.Outbound, a.Admin
	d.Ready = p.cfg.Load() != nil && (p.agent == nil || p.agent.Certificate() != nil)
	d.Draining = p.draining.Load()
	d.XDS = p.xds.Status()
	d.Node.ServiceAccount = p.opts.ServiceAccount
	if p.agent != nil {
		st := p.agent.Status()
		d.Identity = &st
	}
	d.Compiled = p.dump.Load()

	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		p.log.Warn("writing config dump", "err", err)
	}
}

func (p *Proxy) handleStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if err := p.engine.WriteStats(w); err != nil {
		return
	}
	if err := p.inbound.WriteStats(w, "listener.inbound."); err != nil {
		return
	}
	if err := p.transports.WriteStats(w); err != nil {
		return
	}
	fmt.Fprintf(w, "tcp.inbound.connections_proxied %d\ntcp.inbound.connections_denied %d\ntcp.inbound.connect_failures %d\n",
		p.tcpStats.Proxied.Load(), p.tcpStats.Denied.Load(), p.tcpStats.ConnectFails.Load())
	fmt.Fprintf(w, "tcp.outbound.connections_proxied %d\ntcp.outbound.connect_failures %d\n",
		p.tcpOutStats.Proxied.Load(), p.tcpOutStats.ConnectFails.Load())
	st := p.xds.Status()
	connected := 0
	if st.Connected {
		connected = 1
	}
	fmt.Fprintf(w, "xds.connected %d\nxds.streams_opened %d\n", connected, st.StreamsOpen)
	for _, t := range st.Types {
		fmt.Fprintf(w, "xds.%s.responses_accepted %d\nxds.%s.responses_rejected %d\n", t.Type, t.Accepted, t.Type, t.Rejected)
	}
	if p.agent != nil {
		id := p.agent.Status()
		fmt.Fprintf(w, "identity.certificates_issued %d\n", id.Issued)
		if !id.NotAfter.IsZero() {
			fmt.Fprintf(w, "identity.certificate_expires_in_seconds %d\n", int64(time.Until(id.NotAfter).Seconds()))
		}
	}
}
