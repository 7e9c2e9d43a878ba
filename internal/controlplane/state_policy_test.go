package controlplane

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/config"
	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/store"
)

// runState runs a state over st until the test ends and returns it.
func runState(t *testing.T, st *store.Store) *state {
	t.Helper()
	s := newState(st, slog.New(slog.NewTextHandler(io.Discard, nil)), mesh.Security{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("state did not stop")
		}
	})
	return s
}

func openTestStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedOptions{Dir: dir, NoFsync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// put parses docs and writes them to the store as the API does.
func put(t *testing.T, st *store.Store, docs string) {
	t.Helper()
	rs, err := config.Parse([]byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	var writes []store.Write
	for _, r := range rs {
		b, err := config.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		writes = append(writes, store.Write{Key: ConfigKey(r.Kind, r.Namespace, r.Name), Value: b})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := st.Commit(ctx, writes); err != nil {
		t.Fatal(err)
	}
}

func waitSnapshot(t *testing.T, s *state, what string, cond func(*mesh.Snapshot) bool) *mesh.Snapshot {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		snap := s.snapshot()
		if cond(snap) {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keyServer serves a JWK Set that the test can switch off.
type keyServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys string
	down bool
}

func newKeyServer(t *testing.T) *keyServer {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks := &keyServer{keys: fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":%q}]}`, base64.RawURLEncoding.EncodeToString(pub))}
	ks.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, ks.keys)
	}))
	t.Cleanup(ks.Close)
	return ks
}

func TestSnapshotCarriesPolicies(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	s := runState(t, st)
	put(t, st, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  rules:
  - from:
    - source: {principals: [cluster.local/ns/default/sa/orders]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dry, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: issuer-foo
`)
	snap := waitSnapshot(t, s, "the policies are in the snapshot", func(s *mesh.Snapshot) bool {
		return len(s.PeerAuthentications) == 1 && len(s.AuthorizationPolicies) == 2 && len(s.RequestAuthentications) == 1
	})
	if aps := snap.AuthorizationPolicies; aps[0].Name != "dry" || !aps[0].DryRun || aps[1].Name != "payments" || aps[1].DryRun {
		t.Errorf("authorization policies: %+v, %+v; want dry (a dry run) then payments", aps[0], aps[1])
	}
}

func TestFetchedKeysLiveInTheStore(t *testing.T) {
	ks := newKeyServer(t)
	dir := t.TempDir()
	st := openTestStore(t, dir)
	defer st.Close()
	uri := ks.URL + "/jwks.json"
	ra := fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://auth.example.com
    jwksUri: %s
`, uri)

	t.Run("a jwksUri is fetched, stored and put into snapshots", func(t *testing.T) {
		s := runState(t, st)
		put(t, st, ra)
		snap := waitSnapshot(t, s, "the fetched keys are in the snapshot", func(s *mesh.Snapshot) bool { return s.JWKS[uri] != "" })
		if snap.JWKS[uri] != ks.keys {
			t.Errorf("JWKS[%s] = %s, want %s", uri, snap.JWKS[uri], ks.keys)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, found, err := st.Get(ctx, jwksKey(uri)); err != nil || !found {
			t.Errorf("key set not in the store at %s: found %v, %v", jwksKey(uri), found, err)
		}

		// Keys removed from the store behind the control plane's back are
		// fetched and stored again.
		if _, _, err := st.Delete(ctx, jwksKey(uri)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, found, err := st.Get(ctx, jwksKey(uri)); err == nil && found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("deleted key set not stored again")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("a new control plane serves the stored keys while the server is down", func(t *testing.T) {
		ks.mu.Lock()
		ks.down = true
		ks.mu.Unlock()
		s := runState(t, st)
		waitSnapshot(t, s, "the stored keys are in the snapshot", func(s *mesh.Snapshot) bool { return s.JWKS[uri] == ks.keys })
	})

	t.Run("keys of a URI no policy names are not put into snapshots", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, _, err := st.Delete(ctx, ConfigKey(config.KindRequestAuthentication, "default", "jwt")); err != nil {
			t.Fatal(err)
		}
		s := runState(t, st)
		waitSnapshot(t, s, "no keys in the snapshot", func(s *mesh.Snapshot) bool { return len(s.JWKS) == 0 && len(s.RequestAuthentications) == 0 })
	})
}
