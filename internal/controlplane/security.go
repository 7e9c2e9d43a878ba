package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weft-mesh/weft/internal/apiclient"
	"github.com/weft-mesh/weft/internal/ca"
	"github.com/weft-mesh/weft/internal/store"
)

// Path normalization settings (docs/xds.md, "Path normalization").
const (
	PathNormalizationBase           = "BASE"
	PathNormalizationMergeSlashes   = "MERGE_SLASHES"
	PathNormalizationDecodeAndMerge = "DECODE_AND_MERGE_SLASHES"
)

// Defaults of the security options.
const (
	DefaultRootNamespace     = "istio-system"
	DefaultPathNormalization = PathNormalizationMergeSlashes
)

// adminTokenKey is where the API's admin token lives in the store, so that
// replicas share it.
const adminTokenKey = "/weft/api/admin-token"

// validateSecurity checks the security options after defaults.
func (o *Options) validateSecurity() error {
	switch o.PathNormalization {
	case PathNormalizationBase, PathNormalizationMergeSlashes, PathNormalizationDecodeAndMerge:
	default:
		return fmt.Errorf("--path-normalization %q: want %s, %s or %s", o.PathNormalization,
			PathNormalizationBase, PathNormalizationMergeSlashes, PathNormalizationDecodeAndMerge)
	}
	if id := (ca.Identity{TrustDomain: ca.DefaultTrustDomain, Namespace: o.RootNamespace, ServiceAccount: "default"}); id.Validate() != nil {
		return fmt.Errorf("--root-namespace %q: %w", o.RootNamespace, id.Validate())
	}
	if o.TrustDomain != "" {
		if err := ca.ValidateTrustDomain(o.TrustDomain); err != nil {
			return fmt.Errorf("--trust-domain: %w", err)
		}
	}
	if o.WorkloadCertTTL != 0 && o.WorkloadCertTTL < ca.MinWorkloadCertTTL {
		return fmt.Errorf("--workload-cert-ttl %s is shorter than the minimum %s", o.WorkloadCertTTL, ca.MinWorkloadCertTTL)
	}
	return nil
}

// ensureAdminToken returns the API's admin token, creating it in the store
// on the first start of the mesh.
func ensureAdminToken(ctx context.Context, st *store.Store) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	fresh := "weft-admin-" + base64.RawURLEncoding.EncodeToString(b[:])
	kvs, _, err := st.Create(ctx, []store.Write{{Key: adminTokenKey, Value: []byte(fresh)}})
	if err != nil {
		return "", fmt.Errorf("load or create the admin token: %w", err)
	}
	tok := strings.TrimSpace(string(kvs[0].Value))
	if tok == "" {
		return "", fmt.Errorf("the admin token in the store (%s) is empty", adminTokenKey)
	}
	return tok, nil
}

// writeDataFiles writes the admin token (0600) and the trust bundle into
// the data directory and returns their paths.
func writeDataFiles(dataDir, adminToken string, bundle []byte) (tokenFile, caFile string, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", fmt.Errorf("create data dir: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", "", err
	}
	tokenFile = filepath.Join(abs, apiclient.AdminTokenFile)
	caFile = filepath.Join(abs, apiclient.TrustBundleFile)
	if err := apiclient.WriteFileAtomic(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write admin token: %w", err)
	}
	if err := apiclient.WriteFileAtomic(caFile, bundle, 0o644); err != nil {
		return "", "", fmt.Errorf("write trust bundle: %w", err)
	}
	return tokenFile, caFile, nil
}

// servingHosts are the SANs of the control plane's TLS certificate: the
// names docs/xds.md promises, the hosts of both listen addresses, and the
// machine's name when either listens on every address.
func servingHosts(addrs ...string) []string {
	hosts := []string{"weft-control-plane", "localhost", "127.0.0.1", "::1"}
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
			if name, err := os.Hostname(); err == nil {
				hosts = append(hosts, strings.ToLower(name))
			}
			continue
		}
		hosts = append(hosts, h)
	}
	return hosts
}

// requireAdmin lets a request through only with the admin token as its
// bearer token; /healthz stays open.
func requireAdmin(adminToken string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(adminToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
			writeError(w, http.StatusUnauthorized, errors.New("unauthorized: the API needs the control plane's admin token as a bearer token "+
				"(weft --token-file FILE or $WEFT_TOKEN_FILE; the control plane writes it to DATA-DIR/admin.token)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenRequest is the body of POST /api/v1/tokens.
type tokenRequest struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	TTL            string `json:"ttl"`
}

// tokenResponse answers POST /api/v1/tokens.
type tokenResponse struct {
	Token     string    `json:"token"`
	Identity  string    `json:"identity"`
	ExpiresAt time.Time `json:"expiresAt"`
}
