package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Parse reads the resources in data: YAML, one or more documents separated
// by "---" lines, or JSON, one or more objects. A document may also be a
// Kubernetes List ({"kind": "List", "items": [...]}) as kubectl get prints
// it. Empty documents are skipped.
//
// Documents are read as Istio writes them: the Kinds at any of their
// APIVersions (networking.istio.io or security.istio.io), with the usual Kubernetes metadata
// (name is required, namespace defaults to "default"). Every field of the
// spec must be one Istio defines; a misspelt field is an error, never
// silently ignored. Each resource is then validated (see Validate), and a
// resource named twice in data is an error.
//
// Parse returns every resource or none: on any problem it returns nil and
// Errors, one FieldError per problem in every document, so one run shows
// everything to fix. The caller bounds the size of data.
func Parse(data []byte) ([]*Resource, error) {
	docs, errs := readDocuments(data)
	var out []*Resource
	first := map[string]string{} // resource key -> label of the document that defined it
	for _, d := range docs {
		r, derrs := decodeObject(d.obj, d.label, true)
		if len(derrs) > 0 {
			errs = append(errs, derrs...)
			continue
		}
		if prev, dup := first[r.Key()]; dup {
			errs = append(errs, FieldError{Resource: r.String(), Reason: "duplicate resource, first defined in " + prev})
			continue
		}
		first[r.Key()] = d.label
		if verrs := validate(r); len(verrs) > 0 {
			errs = append(errs, verrs...)
			continue
		}
		out = append(out, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// document is one object read from the input, with the label that names
// it in errors until its own name is known.
type document struct {
	label string
	obj   any
}

var utf8BOM = []byte("\ufeff")

// readDocuments splits data into documents and decodes each into generic
// JSON. A document that cannot be decoded becomes an error; the others are
// still returned so that their problems are reported too.
func readDocuments(data []byte) ([]document, Errors) {
	data = bytes.TrimPrefix(data, utf8BOM)
	var raws []rawDocument
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		// JSON is YAML, but YAML parsers choke on some JSON (tabs for
		// indentation, as jq --tab and Go's MarshalIndent write), so JSON
		// gets a JSON parser. A YAML flow mapping ("{kind: VirtualService}")
		// is not JSON and falls back to YAML.
		raws = readJSON(data)
		if failed(raws) {
			if yamlRaws := readYAML(data); !failed(yamlRaws) {
				raws = yamlRaws
			}
		}
	} else {
		raws = readYAML(data)
	}

	var docs []document
	var errs Errors
	for i, raw := range raws {
		label := fmt.Sprintf("document %d", i+1)
		if raw.err != "" {
			errs = append(errs, FieldError{Resource: label, Reason: raw.err})
			continue
		}
		items, isList, err := listItems(raw.obj)
		switch {
		case err != "":
			errs = append(errs, FieldError{Resource: label, Path: "items", Reason: err})
		case isList:
			for j, item := range items {
				docs = append(docs, document{label: fmt.Sprintf("%s items[%d]", label, j), obj: item})
			}
		default:
			docs = append(docs, document{label: label, obj: raw.obj})
		}
	}
	return docs, errs
}

// rawDocument is one non-empty document of the input: its generic JSON, or
// why it could not be read.
type rawDocument struct {
	obj any
	err string
}

func failed(raws []rawDocument) bool {
	return slices.ContainsFunc(raws, func(r rawDocument) bool { return r.err != "" })
}

// listItems returns the items of a Kubernetes List.
func listItems(obj any) (items []any, isList bool, err string) {
	m, ok := obj.(map[string]any)
	if !ok || m["kind"] != "List" {
		return nil, false, ""
	}
	items, ok = m["items"].([]any)
	if !ok && m["items"] != nil {
		return nil, true, "want a list, got " + describe(m["items"])
	}
	return items, true, ""
}

// readJSON reads a stream of JSON values.
func readJSON(data []byte) []rawDocument {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raws []rawDocument
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return raws
		}
		if err != nil {
			msg := err.Error()
			var syn *json.SyntaxError
			if errors.As(err, &syn) {
				line := 1 + bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n"))
				msg = fmt.Sprintf("invalid JSON at line %d: %v", line, err)
			}
			// The decoder cannot resynchronize after a syntax error.
			return append(raws, rawDocument{err: msg})
		}
		raws = append(raws, rawDocument{obj: v})
	}
}

// readYAML reads "---"-separated YAML documents, dropping empty ones.
func readYAML(data []byte) []rawDocument {
	var raws []rawDocument
	for _, c := range splitYAML(data) {
		// Strict rejects duplicate keys, which in YAML are almost always a
		// mistake (two "route:" in one entry, and the first one lost).
		j, err := yaml.YAMLToJSONStrict(c.text)
		if err != nil {
			raws = append(raws, rawDocument{err: yamlError(err, c.line)})
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			raws = append(raws, rawDocument{err: err.Error()})
			continue
		}
		if v == nil {
			continue // empty, or only comments
		}
		raws = append(raws, rawDocument{obj: v})
	}
	return raws
}

// yamlChunk is one document's text and the line of the input it starts on.
type yamlChunk struct {
	text []byte
	line int
}

// splitYAML splits data at document separators: lines that are "---" or
// start with "--- ". A separator line stays at the head of the document it
// opens, with its "---" blanked, so that whatever follows the marker on
// that line is kept and line numbers inside the chunk count from it.
func splitYAML(data []byte) []yamlChunk {
	var chunks []yamlChunk
	start, startLine, line := 0, 1, 1
	for pos := 0; pos < len(data); line++ {
		next := len(data)
		if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		if isSeparator(data[pos:next]) {
			chunks = append(chunks, yamlChunk{text: data[start:pos], line: startLine})
			start, startLine = pos, line
		}
		pos = next
	}
	chunks = append(chunks, yamlChunk{text: data[start:], line: startLine})
	for i := 1; i < len(chunks); i++ {
		text := bytes.Clone(chunks[i].text)
		copy(text, "   ")
		chunks[i].text = text
	}
	return chunks
}

func isSeparator(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	return ok && (len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t')
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError rewrites a YAML parser error for an operator: without the
// converter's prefix, and with line numbers counted from the top of the
// input rather than of the document.
func yamlError(err error, firstLine int) string {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	return yamlLine.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
		return fmt.Sprintf("line %d", n+firstLine-1)
	})
}

// topLevelFields are the fields a Kubernetes object may have. status is
// written by Istio's controllers and kubectl get prints it; it is accepted
// and ignored.
var topLevelFields = []string{"apiVersion", "kind", "metadata", "spec", "status"}

// metadataFields are the fields of Kubernetes ObjectMeta, so that objects
// exported from a cluster (kubectl get -o yaml) apply unchanged. Only name,
// namespace, labels and annotations mean anything to weft.
var metadataFields = []string{
	"name", "namespace", "labels", "annotations",
	"generateName", "uid", "resourceVersion", "generation", "selfLink",
	"creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
	"ownerReferences", "finalizers", "managedFields",
}

// dns1123Subdomain and dns1123Label are Kubernetes' rules for object names
// and namespaces; keeping them means a resource can move between weft and
// a cluster, and names never hold the "/" that store keys use.
var (
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// decodeObject turns one document into a Resource, checking its envelope
// and its spec's structure (but not the spec's semantics; see validate).
// strict is for input written by people: unknown top-level and metadata
// fields are errors, and resourceVersion is ignored. Otherwise (the stored
// form) metadata extras are ignored and resourceVersion becomes Revision.
func decodeObject(obj any, label string, strict bool) (*Resource, Errors) {
	el := &errorList{resource: label}
	m, ok := obj.(map[string]any)
	if !ok {
		el.add("", "want an object, got %s", describe(obj))
		return nil, el.errs
	}

	kindName, ok := m["kind"].(string)
	switch {
	case m["kind"] == nil:
		el.add("kind", "required")
		return nil, el.errs
	case !ok:
		el.add("kind", "want a string, got %s", describe(m["kind"]))
		return nil, el.errs
	case !Kind(kindName).known():
		el.add("", "kind %q: unknown kind, want one of %s", kindName, kindList())
		return nil, el.errs
	}
	r := &Resource{Kind: Kind(kindName)}

	// Name the resource first, so that every later error can use the name.
	meta, ok := m["metadata"].(map[string]any)
	if !ok && m["metadata"] != nil {
		el.add("metadata", "want an object, got %s", describe(m["metadata"]))
	}
	r.Name = metaString(el, meta, "name")
	r.Namespace = metaString(el, meta, "namespace")
	if r.Namespace == "" {
		r.Namespace = "default"
	} else if len(r.Namespace) > 63 || !dns1123Label.MatchString(r.Namespace) {
		el.add("metadata.namespace", "invalid namespace %s: want lowercase letters, digits and '-', at most 63 characters", describe(r.Namespace))
		r.Namespace = "" // not a usable name for the resource
	}
	switch {
	case r.Name == "":
		// A name that is not a string has been reported by metaString.
		if _, isString := meta["name"].(string); isString || meta["name"] == nil {
			el.add("metadata.name", "required")
		}
	case len(r.Name) > 253 || !dns1123Subdomain.MatchString(r.Name):
		el.add("metadata.name", "invalid name %s: want lowercase letters, digits, '-' and '.', at most 253 characters", describe(r.Name))
	case r.Namespace != "":
		el.resource = r.String()
	}

	switch v := m["apiVersion"].(type) {
	case nil:
		el.add("apiVersion", "required")
	case string:
		if versions := r.Kind.APIVersions(); !slices.Contains(versions, v) {
			el.add("apiVersion", "unknown version %q for %s, want one of %s", v, r.Kind, strings.Join(versions, ", "))
		}
		r.APIVersion = v
	default:
		el.add("apiVersion", "want a string, got %s", describe(v))
	}

	if strict {
		for _, k := range sortedKeys(m) {
			if !slices.Contains(topLevelFields, k) {
				el.add(k, "unknown field")
			}
		}
		for _, k := range sortedKeys(meta) {
			if !slices.Contains(metadataFields, k) {
				el.add("metadata."+k, "unknown field")
			}
		}
	} else {
		r.Revision = revision(el, meta["resourceVersion"])
	}
	r.Labels = stringMap(el, meta, "labels")
	r.Annotations = stringMap(el, meta, "annotations")

	r.Spec = decodeSpec(el, r.Kind, m["spec"])
	if len(el.errs) > 0 {
		return nil, el.errs
	}
	return r, nil
}

// decodeSpec checks spec against the kind's schema and, if it is sound,
// decodes it. A missing spec is an empty one, which validation then finds
// wanting.
func decodeSpec(el *errorList, kind Kind, spec any) proto.Message {
	msg := newSpec(kind)
	if spec == nil {
		spec = map[string]any{}
	}
	before := len(el.errs)
	c := &checker{errs: el}
	normalized := c.message(msg.ProtoReflect().Descriptor(), spec, "spec")
	if len(el.errs) > before {
		return nil
	}
	b, err := json.Marshal(normalized)
	if err == nil {
		err = protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(b, msg)
	}
	if err != nil {
		// The checker should have caught anything protojson rejects; if it
		// missed something, still say where to look.
		el.add("spec", "%s", protojsonLocation.ReplaceAllString(err.Error(), ""))
		return nil
	}
	return msg
}

func metaString(el *errorList, meta map[string]any, field string) string {
	switch v := meta[field].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		el.add("metadata."+field, "%s", wantString(v))
		return ""
	}
}

func stringMap(el *errorList, meta map[string]any, field string) map[string]string {
	if meta[field] == nil {
		return nil
	}
	obj, ok := meta[field].(map[string]any)
	if !ok {
		el.add("metadata."+field, "want an object, got %s", describe(meta[field]))
		return nil
	}
	out := make(map[string]string, len(obj))
	for _, k := range sortedKeys(obj) {
		s, ok := obj[k].(string)
		if !ok {
			el.add("metadata."+field+"["+k+"]", "%s", wantString(obj[k]))
			continue
		}
		out[k] = s
	}
	return out
}

// revision reads metadata.resourceVersion as the store writes it: the
// decimal revision, as a string like Kubernetes'.
func revision(el *errorList, v any) int64 {
	var s string
	switch v := v.(type) {
	case nil:
		return 0
	case string:
		s = v
	case json.Number:
		s = string(v)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		el.add("metadata.resourceVersion", "want a decimal revision, got %s", describe(v))
		return 0
	}
	return n
}
