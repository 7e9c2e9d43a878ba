package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	security "istio.io/api/security/v1beta1"

	"github.com/weft-mesh/weft/internal/jwks"
	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/store"
)

// JWKSPrefix is where the key sets fetched for RequestAuthentication
// rules live in the store: /weft/jwks/<hex SHA-256 of the URI>, each a
// JSON storedJWKS. Keeping them in the store, rather than only in memory,
// means a restarted control plane serves the keys at once (no window of
// 401s for valid tokens), replicas serve the same keys, and every change
// of keys is a store revision, so snapshot versions stay store revisions.
const JWKSPrefix = "/weft/jwks/"

// jwksKey is the store key of the key set fetched from uri.
func jwksKey(uri string) string {
	sum := sha256.Sum256([]byte(uri))
	return JWKSPrefix + hex.EncodeToString(sum[:])
}

// storedJWKS is one fetched key set in the store.
type storedJWKS struct {
	URI     string    `json:"uri"`
	Keys    string    `json:"keys"`
	Fetched time.Time `json:"fetched"`
}

// jwksKeeper fetches the key sets that RequestAuthentication rules name by
// URI (jwksUri, or the issuer's OpenID discovery) and keeps the last good
// one of each in the store; the state's mirror of the store puts them into
// snapshots. Stored sets of URIs no longer named are left in place (a few
// kilobytes each) and are not put into snapshots.
type jwksKeeper struct {
	log     *slog.Logger
	store   *store.Store
	fetcher *jwks.Fetcher

	mu     sync.Mutex
	stored map[string]storedJWKS // by store key, as the watch last saw it
}

func newJWKSKeeper(s *store.Store, logger *slog.Logger) *jwksKeeper {
	k := &jwksKeeper{log: logger, store: s, stored: map[string]storedJWKS{}}
	k.fetcher = jwks.NewFetcher(jwks.FetcherOptions{Logger: logger, OnFetch: k.save})
	return k
}

// run fetches until ctx is done.
func (k *jwksKeeper) run(ctx context.Context) { k.fetcher.Run(ctx) }

// save writes a fetched key set to the store unless it is there already.
func (k *jwksKeeper) save(ctx context.Context, uri string, keys []byte) error {
	key := jwksKey(uri)
	k.mu.Lock()
	cur, ok := k.stored[key]
	k.mu.Unlock()
	if ok && cur.URI == uri && cur.Keys == string(keys) {
		return nil
	}
	val, err := json.Marshal(storedJWKS{URI: uri, Keys: string(keys), Fetched: time.Now().UTC()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := k.store.Commit(ctx, []store.Write{{Key: key, Value: val}}); err != nil {
		return fmt.Errorf("store key set of %s: %w", uri, err)
	}
	return nil
}

// isKey reports whether a store key belongs to the keeper.
func (k *jwksKeeper) isKey(key string) bool { return strings.HasPrefix(key, JWKSPrefix) }

// apply mirrors one store event under JWKSPrefix.
func (k *jwksKeeper) apply(ev store.Event) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := ev.KV.Key
	if ev.Type == store.EventDelete {
		if old, ok := k.stored[key]; ok {
			delete(k.stored, key)
			// Someone removed keys the fetcher believes are stored: fetch
			// them again so that they come back.
			k.fetcher.Refetch(old.URI)
		}
		return
	}
	var s storedJWKS
	if err := json.Unmarshal(ev.KV.Value, &s); err != nil || s.URI == "" || jwksKey(s.URI) != key {
		k.log.Error("skipping undecodable key set in store", "key", key, "err", err)
		return
	}
	if _, err := jwks.Parse([]byte(s.Keys)); err != nil {
		k.log.Error("skipping invalid key set in store", "key", key, "uri", s.URI, "err", err)
		return
	}
	k.stored[key] = s
}

// reset forgets the mirror before a relist.
func (k *jwksKeeper) reset() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stored = map[string]storedJWKS{}
}

// keysFor tells the fetcher which key sets ras need and returns those the
// store has, by URI, for a snapshot.
func (k *jwksKeeper) keysFor(ras []*mesh.RequestAuthentication) map[string]string {
	var sources []jwks.Source
	for _, ra := range ras {
		for _, r := range ra.Spec.GetJwtRules() {
			if src, ok := jwksSource(r); ok {
				sources = append(sources, src)
			}
		}
	}
	k.fetcher.Want(sources)
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]string{}
	for _, src := range sources {
		if s, ok := k.stored[jwksKey(src.URI)]; ok {
			out[src.URI] = s.Keys
			continue
		}
		// Fetched but not (or no longer) in the store, as after a relist
		// that missed a delete: serve the fetcher's copy and store it again.
		if keys := k.fetcher.Keys(src.URI); keys != nil {
			out[src.URI] = string(keys)
			k.fetcher.Refetch(src.URI)
		}
	}
	return out
}

// jwksSource is where the keys of r come from when they are not inline:
// its jwksUri, or its issuer's OpenID discovery document.
func jwksSource(r *security.JWTRule) (jwks.Source, bool) {
	if r.GetJwks() != "" {
		return jwks.Source{}, false
	}
	uri := r.GetJwksUri()
	if uri == "" {
		uri = jwks.DiscoveryURI(r.GetIssuer())
	}
	if uri == "" {
		return jwks.Source{}, false
	}
	return jwks.Source{URI: uri, Timeout: r.GetTimeout().AsDuration()}, true
}
