package filter

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// ConfigError is an invalid filter configuration: the field path inside
// the filter's typed_config, in proto field names, and the reason.
type ConfigError struct {
	Path   string
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// Errorf returns a *ConfigError at path.
func Errorf(path, format string, args ...any) error {
	return &ConfigError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// At prefixes err's field path with path, so that each level of a
// builder names only its own fields. A nil err stays nil.
func At(path string, err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		return &ConfigError{Path: path, Reason: err.Error()}
	}
	switch {
	case path == "":
		return ce
	case ce.Path == "":
		return &ConfigError{Path: path, Reason: ce.Reason}
	case ce.Path[0] == '[':
		return &ConfigError{Path: path + ce.Path, Reason: ce.Reason}
	}
	return &ConfigError{Path: path + "." + ce.Path, Reason: ce.Reason}
}

// OnlyFields rejects a message with any field set that is not in allowed,
// and any field this build does not know (a newer API's): a filter must
// never accept a policy it would silently not enforce. The reported field
// is the lowest-numbered offender, so messages are deterministic. The xDS
// decoder uses the same check for every resource it accepts.
func OnlyFields(m proto.Message, allowed ...protoreflect.Name) error {
	r := m.ProtoReflect()
	var bad protoreflect.FieldDescriptor
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, fd.Name()) && (bad == nil || fd.Number() < bad.Number()) {
			bad = fd
		}
		return true
	})
	if bad != nil {
		return Errorf(string(bad.Name()), "not supported")
	}
	if len(r.GetUnknown()) > 0 {
		return Errorf("", "fields unknown to this proxy are set; not supported")
	}
	return nil
}

// Unmarshal unmarshals a typed_config after checking its type URL.
func Unmarshal(a *anypb.Any, url string, m proto.Message) error {
	if a.GetTypeUrl() != url {
		return Errorf("", "type %s, want %s", a.GetTypeUrl(), url)
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return Errorf("", "decoding: %v", err)
	}
	return nil
}
