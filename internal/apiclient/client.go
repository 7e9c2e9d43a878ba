// Package apiclient is the Go client of the control plane's HTTP API, used by
// the CLI, the demo and the end-to-end tests.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultServer is the control plane's HTTP API on this host.
const DefaultServer = "http://127.0.0.1:15014"

// Client talks to one control plane.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*clientConfig)

type clientConfig struct {
	token   string
	rootCAs *x509.CertPool
}

// WithToken sends token (the control plane's admin token) as a bearer
// token on every request.
func WithToken(token string) Option { return func(c *clientConfig) { c.token = token } }

// WithRootCAs verifies an https API against pool (the mesh's trust
// bundle) instead of the system's roots.
func WithRootCAs(pool *x509.CertPool) Option { return func(c *clientConfig) { c.rootCAs = pool } }

// New returns a client for the API at server (a base URL such as
// http://127.0.0.1:15014, or https://... when the API serves TLS).
func New(server string, opts ...Option) *Client {
	var cfg clientConfig
	for _, o := range opts {
		o(&cfg)
	}
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.rootCAs}
	return &Client{
		base:  strings.TrimRight(server, "/"),
		token: cfg.token,
		http:  &http.Client{Timeout: 30 * time.Second, Transport: tr},
	}
}

// Server is the API's base URL.
func (c *Client) Server() string { return c.base }

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Result says what happened to one resource.
type Result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Action    string `json:"action"`
}

// Finding is a warning about a resource.
type Finding struct {
	Resource string `json:"resource"`
	Path     string `json:"path"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
}

// Error is one error the API returned.
type Error struct {
	Resource string `json:"resource,omitempty"`
	Path     string `json:"path,omitempty"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// Response is the API's answer to apply and delete.
type Response struct {
	// Revision is the store revision an apply produced (zero when nothing
	// changed); a proxy that ACKed this version or later has the change.
	Revision int64     `json:"revision"`
	Results  []Result  `json:"results"`
	Warnings []Finding `json:"warnings"`
	Errors   []Error   `json:"errors"`
}

// APIError is returned when the API answers with an error status; it holds
// every error message the API gave.
type APIError struct {
	Status int
	Errors []Error
}

func (e *APIError) Error() string {
	msgs := make([]string, 0, len(e.Errors))
	for _, er := range e.Errors {
		msgs = append(msgs, er.Message)
	}
	if len(msgs) == 0 {
		return fmt.Sprintf("control plane answered %d", e.Status)
	}
	return strings.Join(msgs, "\n")
}

// Apply sends multi-document YAML or JSON; it is all-or-nothing.
func (c *Client) Apply(ctx context.Context, docs []byte) (*Response, error) {
	var resp Response
	err := c.do(ctx, http.MethodPost, "/api/v1/apply", docs, &resp)
	return &resp, err
}

// DeleteDocuments deletes the resources the documents name.
func (c *Client) DeleteDocuments(ctx context.Context, docs []byte) (*Response, error) {
	var resp Response
	err := c.do(ctx, http.MethodPost, "/api/v1/delete", docs, &resp)
	return &resp, err
}

// Delete deletes one resource.
func (c *Client) Delete(ctx context.Context, kind, namespace, name string) (*Response, error) {
	var resp Response
	err := c.do(ctx, http.MethodDelete, "/api/v1/resources/"+url.PathEscape(kind)+"/"+url.PathEscape(namespace)+"/"+url.PathEscape(name), nil, &resp)
	return &resp, err
}

// List returns the stored objects of kind (Kubernetes-style JSON), in one
// namespace or, when namespace is empty, in all.
func (c *Client) List(ctx context.Context, kind, namespace string) ([]json.RawMessage, error) {
	path := "/api/v1/resources/" + url.PathEscape(kind)
	if namespace != "" {
		path += "?namespace=" + url.QueryEscape(namespace)
	}
	var resp struct {
		Items []json.RawMessage `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, path, nil, &resp)
	return resp.Items, err
}

// Get returns one stored object.
func (c *Client) Get(ctx context.Context, kind, namespace, name string) (json.RawMessage, error) {
	var obj json.RawMessage
	err := c.do(ctx, http.MethodGet, "/api/v1/resources/"+url.PathEscape(kind)+"/"+url.PathEscape(namespace)+"/"+url.PathEscape(name), nil, &obj)
	return obj, err
}

// Workload is a registered workload.
type Workload struct {
	ID             string            `json:"id"`
	Service        string            `json:"service"`
	Namespace      string            `json:"namespace"`
	ServiceAccount string            `json:"serviceAccount"`
	Labels         map[string]string `json:"labels"`
	ServicePort    uint32            `json:"servicePort"`
	Protocol       string            `json:"protocol,omitempty"` // "http" when empty, or "tcp"
	InboundAddr    string            `json:"inboundAddr"`
	OutboundAddr   string            `json:"outboundAddr"`
	AppAddr        string            `json:"appAddr"`
	AdminAddr      string            `json:"adminAddr"`
}

// Workloads lists the registered workloads.
func (c *Client) Workloads(ctx context.Context) ([]Workload, error) {
	var resp struct {
		Items []Workload `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/workloads", nil, &resp)
	return resp.Items, err
}

// TypeStatus is what a proxy has of one xDS type.
type TypeStatus struct {
	Sent        string `json:"sent"`
	Acked       string `json:"acked"`
	NackVersion string `json:"nackVersion"`
	NackMessage string `json:"nackMessage"`
}

// ProxyStatus is one connected proxy.
type ProxyStatus struct {
	ID             string `json:"id"`
	Service        string `json:"service"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	// Identity is the SPIFFE ID the proxy's token proved.
	Identity    string                 `json:"identity"`
	Labels      map[string]string      `json:"labels"`
	Address     string                 `json:"address"`
	ConnectedAt time.Time              `json:"connectedAt"`
	XDS         map[string]*TypeStatus `json:"xds"`
}

// Proxies lists the connected proxies and their sync state.
func (c *Client) Proxies(ctx context.Context) ([]ProxyStatus, error) {
	var resp struct {
		Items []ProxyStatus `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/proxies", nil, &resp)
	return resp.Items, err
}

// TrustBundle is the mesh CA's trust domain and root certificates.
type TrustBundle struct {
	TrustDomain string `json:"trustDomain"`
	// PEM holds the root certificate(s) every workload trusts.
	PEM string `json:"trustBundle"`
}

// TrustBundle returns the mesh's trust bundle (weft ca root).
func (c *Client) TrustBundle(ctx context.Context) (*TrustBundle, error) {
	var tb TrustBundle
	err := c.do(ctx, http.MethodGet, "/api/v1/ca/root", nil, &tb)
	return &tb, err
}

// TokenRequest asks for a workload token (weft token create).
type TokenRequest struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	// TTL is a Go duration ("720h"); empty means the control plane's
	// default.
	TTL string `json:"ttl,omitempty"`
}

// Token is a workload token and what it proves.
type Token struct {
	Token string `json:"token"`
	// Identity is the SPIFFE ID the token proves.
	Identity  string    `json:"identity"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// CreateToken makes a token that proves a workload identity to the
// control plane's xDS and CA port.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*Token, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var tok Token
	err = c.do(ctx, http.MethodPost, "/api/v1/tokens", body, &tok)
	return &tok, err
}

// Healthy reports whether the control plane answers its health check.
func (c *Client) Healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("control plane health: %s", resp.Status)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
		if json.Valid(body) {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var unknownCA x509.UnknownAuthorityError
		if errors.As(err, &unknownCA) {
			return fmt.Errorf("reach control plane at %s: its certificate is not signed by a CA we trust: pass --ca-file with the mesh trust bundle (weft ca root, or DATA-DIR/ca.pem): %w", c.base, err)
		}
		return fmt.Errorf("reach control plane at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		var er Response
		if json.Unmarshal(data, &er) == nil && len(er.Errors) > 0 {
			return &APIError{Status: resp.StatusCode, Errors: er.Errors}
		}
		return &APIError{Status: resp.StatusCode, Errors: []Error{{Reason: resp.Status, Message: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))}}}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}
