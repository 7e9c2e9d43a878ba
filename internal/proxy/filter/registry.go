package filter

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/types/known/anypb"
)

// Builder compiles one filter from its typed_config: it unmarshals and
// validates every field and precompiles every matcher, so that the request
// path only evaluates. It runs when configuration is decoded, on the xDS
// client's goroutine, never on the request path. An error is a NACK
// reason; it should name the field path inside the typed config (for
// example "rules.policies[\"ns[default]-policy[deny]-rule[0]\"].permissions[0].header: ...").
// Anything the builder does not understand must be an error: a filter must
// never accept a policy it would not enforce.
type Builder func(cfg *anypb.Any) (Filter, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Builder{}
)

// Register makes a filter type available by its typed_config type URL. It
// is called from the init function of the package implementing the filter,
// as grpc-go registers its HTTP filters; the type must have a place in the
// order (order.go). Registering a type twice panics.
func Register(typeURL string, b Builder) {
	if Rank(typeURL) < 0 {
		panic(fmt.Sprintf("filter: %s has no place in the filter order (order.go)", typeURL))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[typeURL]; dup {
		panic("filter: " + typeURL + " registered twice")
	}
	registry[typeURL] = b
}

// Lookup returns the builder for a typed_config type URL.
func Lookup(typeURL string) (Builder, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	b, ok := registry[typeURL]
	return b, ok
}
