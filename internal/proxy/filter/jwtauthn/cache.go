package jwtauthn

import (
	"hash/maphash"
	"sync/atomic"
)

// cacheSlots is the number of tokens a provider remembers, about Envoy's
// default jwt_cache_size (100).
const cacheSlots = 128

// tokenCache remembers the tokens a provider verified, so that a client
// sending the same token on every request pays for one signature check, as
// with Envoy's JWT cache. It is direct-mapped: a token's slot is chosen by
// a hash of it, and a newer token replaces the one in its slot. It takes
// no lock: a hit is a hash, an atomic load and a string comparison. Only
// what does not change with time is cached (issuer, audiences, signature);
// exp and nbf are checked on every use. A nil *tokenCache caches nothing.
type tokenCache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Pointer[cachedToken]
}

type cachedToken struct {
	raw    string
	claims map[string]any // read-only once cached
}

func newTokenCache() *tokenCache { return &tokenCache{seed: maphash.MakeSeed()} }

func (c *tokenCache) slot(raw string) *atomic.Pointer[cachedToken] {
	return &c.slots[maphash.String(c.seed, raw)%cacheSlots]
}

// get returns the claims of raw if it was verified, or nil.
func (c *tokenCache) get(raw string) map[string]any {
	if c == nil {
		return nil
	}
	if e := c.slot(raw).Load(); e != nil && e.raw == raw {
		return e.claims
	}
	return nil
}

// put remembers that raw verified, with its claims.
func (c *tokenCache) put(raw string, claims map[string]any) {
	if c != nil {
		c.slot(raw).Store(&cachedToken{raw: raw, claims: claims})
	}
}
