package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// object is a resource in Kubernetes form, as the store keeps it and the
// HTTP API and "weft get" show it. Field order is fixed so that encoding
// the same resource twice gives the same bytes.
type object struct {
	APIVersion string          `json:"apiVersion"`
	Kind       Kind            `json:"kind"`
	Metadata   objectMeta      `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

type objectMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
}

// Encode returns r as a Kubernetes-style JSON object: apiVersion, kind,
// metadata (name, namespace, labels, annotations, and resourceVersion when
// r has a Revision) and spec in protojson's camelCase form. Every field of
// the spec is kept, enforced or not, so Decode gives back the same
// resource. The output is compact and the same for equal resources.
func Encode(r *Resource) ([]byte, error) {
	want := newSpec(r.Kind)
	switch {
	case want == nil:
		return nil, fmt.Errorf("encoding %s: unknown kind %q", r, r.Kind)
	case r.Name == "":
		return nil, fmt.Errorf("encoding %s: no name", r)
	case r.Spec == nil || !r.Spec.ProtoReflect().IsValid():
		return nil, fmt.Errorf("encoding %s: no spec", r)
	case proto.MessageName(r.Spec) != proto.MessageName(want):
		return nil, fmt.Errorf("encoding %s: spec is a %s, want a %s", r, proto.MessageName(r.Spec), proto.MessageName(want))
	}
	spec, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", r, err)
	}
	obj := object{
		APIVersion: r.APIVersion,
		Kind:       r.Kind,
		Metadata: objectMeta{
			Name:        r.Name,
			Namespace:   r.Namespace,
			Labels:      r.Labels,
			Annotations: r.Annotations,
		},
		// encoding/json compacts a RawMessage, which also removes the
		// whitespace protojson varies on purpose from run to run.
		Spec: spec,
	}
	if obj.APIVersion == "" {
		obj.APIVersion = r.Kind.DefaultAPIVersion()
	}
	if r.Revision != 0 {
		obj.Metadata.ResourceVersion = strconv.FormatInt(r.Revision, 10)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Regexes and header values are full of < > &; keep them readable.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", r, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// EncodeYAML returns r as YAML, as "weft get -o yaml" prints it; the YAML
// parses back into the same resource. Keys are sorted, as kubectl sorts them.
func EncodeYAML(r *Resource) ([]byte, error) {
	j, err := Encode(r)
	if err != nil {
		return nil, err
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("encoding %s as YAML: %w", r, err)
	}
	return y, nil
}

// Decode reads a resource written by Encode, or any single Kubernetes-style
// JSON object of a known kind. It is lenient where Parse is strict about
// what is not spec (unknown metadata and top-level fields are ignored) and
// as strict about the spec, which it checks against the schema with field
// paths. metadata.resourceVersion, if present, becomes Revision.
//
// Decode does not Validate: it reads what the store holds, and a rule added
// in a later version must not make stored resources unreadable. Callers
// that take resources from users call Validate themselves. Errors are
// Errors.
func Decode(data []byte) (*Resource, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, Errors{{Resource: "resource", Reason: "invalid JSON: " + err.Error()}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, Errors{{Resource: "resource", Reason: "invalid JSON: data after the object"}}
	}
	r, errs := decodeObject(v, "resource", false)
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}
