package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/internal/ca"
	"github.com/weft-mesh/weft/internal/config"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/xds"
)

// maxBody bounds what one API request may upload.
const maxBody = 8 << 20

// api is the control plane's HTTP API (see docs/api.md).
type api struct {
	log   *slog.Logger
	store *store.Store
	state *state
	xds   *xds.Server
	ca    *ca.Authority
	// adminToken guards every route but /healthz.
	adminToken string
}

// ApplyResult says what an apply did to one resource.
type ApplyResult struct {
	Kind      config.Kind `json:"kind"`
	Namespace string      `json:"namespace"`
	Name      string      `json:"name"`
	// Action is created, configured, unchanged, deleted or "not found".
	Action string `json:"action"`
}

// APIError is one error in an error answer; Resource and Path are set for
// validation errors.
type APIError struct {
	Resource string `json:"resource,omitempty"`
	Path     string `json:"path,omitempty"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// ApplyResponse answers an apply or a delete.
type ApplyResponse struct {
	// Revision is the store revision after the change; proxies that ACKed
	// this version or a later one have it.
	Revision int64            `json:"revision,omitempty"`
	Results  []ApplyResult    `json:"results,omitempty"`
	Warnings []config.Finding `json:"warnings,omitempty"`
	Errors   []APIError       `json:"errors,omitempty"`
}

func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /api/v1/apply", a.apply)
	mux.HandleFunc("POST /api/v1/delete", a.deleteDocuments)
	mux.HandleFunc("GET /api/v1/resources/{kind}", a.list)
	mux.HandleFunc("GET /api/v1/resources/{kind}/{namespace}/{name}", a.get)
	mux.HandleFunc("DELETE /api/v1/resources/{kind}/{namespace}/{name}", a.deleteOne)
	mux.HandleFunc("GET /api/v1/workloads", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"items": a.state.Workloads()})
	})
	mux.HandleFunc("GET /api/v1/proxies", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"items": a.xds.Status()})
	})
	mux.HandleFunc("GET /api/v1/ca/root", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"trustDomain": a.ca.TrustDomain(), "trustBundle": string(a.ca.TrustBundlePEM())})
	})
	mux.HandleFunc("POST /api/v1/tokens", a.createToken)
	// Profiles of the control plane, for the admin only (behind the same
	// token as everything else here): heap, CPU, goroutines.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	return requireAdmin(a.adminToken, mux)
}

// createToken makes a workload token (weft token create).
func (a *api) createToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("token request: %w", err))
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("token request: ttl %q: want a positive duration such as 720h", req.TTL))
			return
		}
	}
	id := ca.Identity{TrustDomain: a.ca.TrustDomain(), Namespace: req.Namespace, ServiceAccount: req.ServiceAccount}
	if id.ServiceAccount == "" {
		id.ServiceAccount = "default"
	}
	tok, exp, err := a.ca.IssueToken(id, ttl)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("token request: %w", err))
		return
	}
	a.log.Info("token created", "identity", id.SpiffeID(), "expires_at", exp.UTC().Format(time.RFC3339))
	writeJSON(w, http.StatusOK, tokenResponse{Token: tok, Identity: id.SpiffeID(), ExpiresAt: exp})
}

// apply validates every document and then writes them all in one
// transaction: one bad document changes nothing.
func (a *api) apply(w http.ResponseWriter, r *http.Request) {
	resources, ok := a.parseBody(w, r)
	if !ok {
		return
	}
	resp := ApplyResponse{Warnings: config.Analyze(resources)}
	var writes []store.Write
	for _, res := range resources {
		key := ConfigKey(res.Kind, res.Namespace, res.Name)
		action := "created"
		if old, found, err := a.store.Get(r.Context(), key); err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		} else if found {
			action = "configured"
			if prev, err := config.Decode(old.Value); err == nil && sameResource(prev, res) {
				action = "unchanged"
			}
		}
		resp.Results = append(resp.Results, ApplyResult{Kind: res.Kind, Namespace: res.Namespace, Name: res.Name, Action: action})
		if action == "unchanged" {
			continue
		}
		b, err := config.Encode(res)
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Errorf("encode %s: %w", res, err))
			return
		}
		writes = append(writes, store.Write{Key: key, Value: b})
	}
	if len(writes) > 0 {
		rev, err := a.store.Commit(r.Context(), writes)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		resp.Revision = rev
	}
	for _, res := range resp.Results {
		a.log.Info("applied", "kind", res.Kind, "namespace", res.Namespace, "name", res.Name, "action", res.Action)
	}
	writeJSON(w, http.StatusOK, resp)
}

func sameResource(a, b *config.Resource) bool {
	return a.APIVersion == b.APIVersion && proto.Equal(a.Spec, b.Spec) &&
		mapsEqual(a.Labels, b.Labels) && mapsEqual(a.Annotations, b.Annotations)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// deleteDocuments deletes the resources named by the documents in the body.
func (a *api) deleteDocuments(w http.ResponseWriter, r *http.Request) {
	resources, ok := a.parseBody(w, r)
	if !ok {
		return
	}
	var resp ApplyResponse
	var writes []store.Write
	for _, res := range resources {
		key := ConfigKey(res.Kind, res.Namespace, res.Name)
		_, found, err := a.store.Get(r.Context(), key)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		action := "not found"
		if found {
			action = "deleted"
			writes = append(writes, store.Write{Key: key, Delete: true})
		}
		resp.Results = append(resp.Results, ApplyResult{Kind: res.Kind, Namespace: res.Namespace, Name: res.Name, Action: action})
	}
	if len(writes) > 0 {
		rev, err := a.store.Commit(r.Context(), writes)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		resp.Revision = rev
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *api) deleteOne(w http.ResponseWriter, r *http.Request) {
	kind, ok := pathKind(w, r)
	if !ok {
		return
	}
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	rev, deleted, err := a.store.Delete(r.Context(), ConfigKey(kind, ns, name))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if !deleted {
		writeError(w, http.StatusNotFound, notFound(kind, ns, name))
		return
	}
	a.log.Info("deleted", "kind", kind, "namespace", ns, "name", name)
	writeJSON(w, http.StatusOK, ApplyResponse{Revision: rev, Results: []ApplyResult{{Kind: kind, Namespace: ns, Name: name, Action: "deleted"}}})
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	kind, ok := pathKind(w, r)
	if !ok {
		return
	}
	prefix := ConfigPrefix + string(kind) + "/"
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		prefix += ns + "/"
	}
	kvs, _, err := a.store.List(r.Context(), prefix)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	items := make([]json.RawMessage, 0, len(kvs))
	for _, kv := range kvs {
		item, err := storedObject(kv)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		items = append(items, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	kind, ok := pathKind(w, r)
	if !ok {
		return
	}
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	kv, found, err := a.store.Get(r.Context(), ConfigKey(kind, ns, name))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, notFound(kind, ns, name))
		return
	}
	item, err := storedObject(kv)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(item)
}

// storedObject re-encodes a stored resource with its store revision as
// metadata.resourceVersion.
func storedObject(kv store.KV) (json.RawMessage, error) {
	res, err := config.Decode(kv.Value)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	res.Revision = kv.ModRevision
	return config.Encode(res)
}

func pathKind(w http.ResponseWriter, r *http.Request) (config.Kind, bool) {
	kind, err := config.ParseKind(r.PathValue("kind"))
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return "", false
	}
	return kind, true
}

// parseBody reads and validates the documents in a request body, answering
// 400 with every error when any is invalid.
func (a *api) parseBody(w http.ResponseWriter, r *http.Request) ([]*config.Resource, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("read body: %w", err))
		return nil, false
	}
	resources, err := config.Parse(body)
	if err != nil {
		var verrs config.Errors
		if errors.As(err, &verrs) {
			resp := ApplyResponse{}
			for _, e := range verrs {
				resp.Errors = append(resp.Errors, APIError{Resource: e.Resource, Path: e.Path, Reason: e.Reason, Message: e.Error()})
			}
			writeJSON(w, http.StatusBadRequest, resp)
			return nil, false
		}
		writeError(w, http.StatusBadRequest, err)
		return nil, false
	}
	if len(resources) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("no resources in request body"))
		return nil, false
	}
	return resources, true
}

func writeError(w http.ResponseWriter, code int, err error) {
	msg := err.Error()
	writeJSON(w, code, ApplyResponse{Errors: []APIError{{Reason: firstLine(msg), Message: msg}}})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
