package config

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
)

// checker walks a document's spec, as generic JSON (what encoding/json
// decodes into any, with UseNumber), against the protobuf descriptor of the
// kind's spec message.
//
// protojson alone would do the decoding, but it stops at the first problem
// and names a line and column of JSON that the operator never wrote (the
// YAML was converted). The checker instead reports every unknown field and
// every wrongly typed value with its field path, and returns a normalized
// copy of the JSON that protojson is sure to accept: integers in canonical
// form, durations in protojson's "1.5s" form, nulls dropped.
type checker struct {
	errs *errorList
}

// message checks that v is the JSON form of a message md and returns its
// normalized form.
func (c *checker) message(md protoreflect.MessageDescriptor, v any, path string) any {
	if wkt := wellKnown[md.FullName()]; wkt != nil {
		return wkt(c, md, v, path)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		c.errs.add(path, "want an object, got %s", describe(v))
		return nil
	}
	out := make(map[string]any, len(obj))
	fields := md.Fields()
	seen := map[protoreflect.FieldNumber]string{}
	oneofs := map[protoreflect.FullName]string{}
	for _, key := range sortedKeys(obj) {
		val := obj[key]
		p := joinField(path, key)
		// protojson takes either the JSON name (camelCase) or the proto
		// name (snake_case); so does kubectl against Istio's CRDs.
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			c.errs.add(p, "unknown field")
			continue
		}
		if other, dup := seen[fd.Number()]; dup {
			c.errs.add(p, "duplicate field, also set as %s", other)
			continue
		}
		seen[fd.Number()] = key
		// A null leaves the field unset, as in protojson, except where
		// null is itself a value.
		if val == nil && !nullable(fd) {
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, set := oneofs[od.FullName()]; set {
				c.errs.add(p, "conflicts with %s: set only one of %s", other, oneofMembers(od))
				continue
			}
			oneofs[od.FullName()] = key
		}
		out[key] = c.field(fd, val, p)
	}
	return out
}

// field checks the value of one field, which may be a list or a map.
func (c *checker) field(fd protoreflect.FieldDescriptor, v any, path string) any {
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			c.errs.add(path, "want an object, got %s", describe(v))
			return nil
		}
		out := make(map[string]any, len(obj))
		for _, k := range sortedKeys(obj) {
			p := path + "[" + k + "]"
			c.mapKey(fd.MapKey(), k, p)
			out[k] = c.single(fd.MapValue(), obj[k], p)
		}
		return out
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			c.errs.add(path, "want a list, got %s", describe(v))
			return nil
		}
		out := make([]any, len(list))
		for i, e := range list {
			out[i] = c.single(fd, e, fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	default:
		return c.single(fd, v, path)
	}
}

// single checks one value of fd's type: the field itself, or one element of
// a list or map.
func (c *checker) single(fd protoreflect.FieldDescriptor, v any, path string) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return c.message(fd.Message(), v, path)
	case protoreflect.EnumKind:
		return c.enum(fd.Enum(), v, path)
	default:
		return c.scalar(fd.Kind(), v, path)
	}
}

// mapKey checks a map key; JSON keys are always strings, so only non-string
// key types need a look.
func (c *checker) mapKey(fd protoreflect.FieldDescriptor, k, path string) {
	switch fd.Kind() {
	case protoreflect.StringKind:
	case protoreflect.BoolKind:
		if k != "true" && k != "false" {
			c.errs.add(path, "want a key of true or false")
		}
	default:
		c.scalar(fd.Kind(), k, path)
	}
}

func (c *checker) enum(ed protoreflect.EnumDescriptor, v any, path string) any {
	if ed.FullName() == "google.protobuf.NullValue" {
		if v != nil && v != "NULL_VALUE" {
			c.errs.add(path, "want null, got %s", describe(v))
		}
		return v
	}
	values := ed.Values()
	switch v := v.(type) {
	case string:
		if values.ByName(protoreflect.Name(v)) != nil {
			return v
		}
	case json.Number:
		if n, err := strconv.ParseInt(string(v), 10, 32); err == nil && values.ByNumber(protoreflect.EnumNumber(n)) != nil {
			return v
		}
	}
	names := make([]string, values.Len())
	for i := range values.Len() {
		names[i] = string(values.Get(i).Name())
	}
	c.errs.add(path, "unknown value %s, want one of %s", describe(v), strings.Join(names, ", "))
	return nil
}

// jsonNumber matches what protojson accepts as a number inside a string.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func (c *checker) scalar(kind protoreflect.Kind, v any, path string) any {
	switch kind {
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			c.errs.add(path, "%s", wantString(v))
			return nil
		}
		return v
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			c.errs.add(path, "want true or false, got %s", describe(v))
			return nil
		}
		return v
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok || !isBase64(s) {
			c.errs.add(path, "want base64-encoded bytes, got %s", describe(v))
			return nil
		}
		return v
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return c.float(kind, v, path)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return c.integer(v, path, math.MinInt32, math.MaxInt32)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return c.integer(v, path, 0, math.MaxUint32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return c.integer(v, path, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return c.integer(v, path, 0, math.MaxUint64)
	}
	c.errs.add(path, "unsupported field type %s", kind)
	return nil
}

// numberText returns the text of a JSON number, or of a string holding one
// (protojson accepts both for numeric fields).
func numberText(v any) (string, bool) {
	switch v := v.(type) {
	case json.Number:
		return string(v), true
	case string:
		return v, jsonNumber.MatchString(v)
	}
	return "", false
}

// integer checks that v is an integer in [lo, hi] and returns it as a JSON
// number in canonical form. lo and hi are given as int64 and uint64 so that
// the full range of both 64-bit types can be named.
func (c *checker) integer(v any, path string, lo int64, hi uint64) any {
	s, ok := numberText(v)
	if !ok {
		c.errs.add(path, "want an integer, got %s", describe(v))
		return nil
	}
	outOfRange := func() any {
		c.errs.add(path, "want an integer from %d to %d, got %s", lo, hi, s)
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < lo || (n > 0 && uint64(n) > hi) {
			return outOfRange()
		}
		return json.Number(strconv.FormatInt(n, 10))
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > hi {
			return outOfRange()
		}
		return json.Number(strconv.FormatUint(n, 10))
	}
	// Not a plain integer: perhaps "1e3" or "50.0", which JSON and YAML
	// tools sometimes write for whole numbers.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return outOfRange()
	}
	if f != math.Trunc(f) {
		c.errs.add(path, "want an integer, got %s", s)
		return nil
	}
	// float64(hi) rounds up for the 64-bit maxima (to 2^63 and 2^64),
	// which are themselves out of range.
	if f < float64(lo) || f > float64(hi) || (hi > 1<<53 && f == float64(hi)) {
		return outOfRange()
	}
	if f < 0 {
		return json.Number(strconv.FormatInt(int64(f), 10))
	}
	return json.Number(strconv.FormatUint(uint64(f), 10))
}

func (c *checker) float(kind protoreflect.Kind, v any, path string) any {
	if s, ok := v.(string); ok && (s == "NaN" || s == "Infinity" || s == "-Infinity") {
		return v
	}
	s, ok := numberText(v)
	if !ok {
		c.errs.add(path, "want a number, got %s", describe(v))
		return nil
	}
	bits := 64
	if kind == protoreflect.FloatKind {
		bits = 32
	}
	if _, err := strconv.ParseFloat(s, bits); err != nil {
		c.errs.add(path, "number %s is out of range", s)
		return nil
	}
	return json.Number(s)
}

// isBase64 reports whether protojson will accept s for a bytes field: the
// standard or URL alphabet, padded or not.
func isBase64(s string) bool {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	_, err := enc.DecodeString(s)
	return err == nil
}

// wellKnown checks the well-known types whose JSON form is not an object of
// their fields.
var wellKnown map[protoreflect.FullName]func(c *checker, md protoreflect.MessageDescriptor, v any, path string) any

func init() {
	// Assigned in init because the functions refer to the checker, which
	// refers to the map.
	wrapper := func(c *checker, md protoreflect.MessageDescriptor, v any, path string) any {
		return c.single(md.Fields().ByName("value"), v, path)
	}
	wellKnown = map[protoreflect.FullName]func(*checker, protoreflect.MessageDescriptor, any, string) any{
		"google.protobuf.Duration":    (*checker).duration,
		"google.protobuf.Timestamp":   (*checker).viaProtojson,
		"google.protobuf.FieldMask":   (*checker).viaProtojson,
		"google.protobuf.Any":         (*checker).viaProtojson,
		"google.protobuf.Struct":      (*checker).object,
		"google.protobuf.ListValue":   (*checker).list,
		"google.protobuf.Value":       func(_ *checker, _ protoreflect.MessageDescriptor, v any, _ string) any { return v },
		"google.protobuf.DoubleValue": wrapper,
		"google.protobuf.FloatValue":  wrapper,
		"google.protobuf.Int64Value":  wrapper,
		"google.protobuf.UInt64Value": wrapper,
		"google.protobuf.Int32Value":  wrapper,
		"google.protobuf.UInt32Value": wrapper,
		"google.protobuf.BoolValue":   wrapper,
		"google.protobuf.StringValue": wrapper,
		"google.protobuf.BytesValue":  wrapper,
	}
}

// duration accepts what Istio accepts: any Go duration ("5m", "1h30m",
// "300ms", "0.5s"), because Istio decodes durations with time.ParseDuration
// and its documentation is full of "baseEjectionTime: 3m". protojson only
// takes seconds ("180s"), so the value is rewritten to that form.
func (c *checker) duration(md protoreflect.MessageDescriptor, v any, path string) any {
	s, ok := v.(string)
	if ok {
		if d, err := time.ParseDuration(s); err == nil {
			b, err := protojson.Marshal(durationpb.New(d))
			if err == nil {
				return json.RawMessage(b)
			}
		}
		// Durations past time.Duration's 290 years are still valid protobuf.
		if c.quietProtojson(md, v) {
			return v
		}
	}
	c.errs.add(path, `want a duration such as "10s", "1.5s" or "1m30s", got %s`, describe(v))
	return nil
}

// viaProtojson checks a well-known type with protojson itself, for the
// types whose JSON forms are too fiddly to be worth repeating here.
func (c *checker) viaProtojson(md protoreflect.MessageDescriptor, v any, path string) any {
	if err := protojsonCheck(md, v); err != nil {
		c.errs.add(path, "want a %s: %s", md.Name(), err)
		return nil
	}
	return v
}

func (c *checker) quietProtojson(md protoreflect.MessageDescriptor, v any) bool {
	return protojsonCheck(md, v) == nil
}

// protojsonLocation is the "(line 1:5): " protojson puts in its errors,
// meaningless for a value cut out of a larger document.
var protojsonLocation = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):\s*)?`)

func protojsonCheck(md protoreflect.MessageDescriptor, v any) error {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := protojson.Unmarshal(b, mt.New().Interface()); err != nil {
		return fmt.Errorf("%s", protojsonLocation.ReplaceAllString(err.Error(), ""))
	}
	return nil
}

// object accepts any JSON object, for google.protobuf.Struct.
func (c *checker) object(_ protoreflect.MessageDescriptor, v any, path string) any {
	if _, ok := v.(map[string]any); !ok {
		c.errs.add(path, "want an object, got %s", describe(v))
		return nil
	}
	return v
}

// list accepts any JSON list, for google.protobuf.ListValue.
func (c *checker) list(_ protoreflect.MessageDescriptor, v any, path string) any {
	if _, ok := v.([]any); !ok {
		c.errs.add(path, "want a list, got %s", describe(v))
		return nil
	}
	return v
}

// nullable reports whether null is a value of fd rather than "unset".
func nullable(fd protoreflect.FieldDescriptor) bool {
	if fd.IsList() || fd.IsMap() {
		return false
	}
	if md := fd.Message(); md != nil {
		return md.FullName() == "google.protobuf.Value"
	}
	if ed := fd.Enum(); ed != nil {
		return ed.FullName() == "google.protobuf.NullValue"
	}
	return false
}

// oneofMembers lists a oneof's fields by JSON name: "exact, prefix, regex".
func oneofMembers(od protoreflect.OneofDescriptor) string {
	fields := od.Fields()
	names := make([]string, fields.Len())
	for i := range fields.Len() {
		names[i] = fields.Get(i).JSONName()
	}
	return strings.Join(names, ", ")
}

// wantString is the reason for a value that should have been a string. YAML
// 1.1, which Kubernetes tools speak, reads unquoted y, n, yes, no, on and off
// as booleans, so "namespace: y" is not a string; say so.
func wantString(v any) string {
	if _, ok := v.(bool); ok {
		return fmt.Sprintf("want a string, got %s; quote the value (YAML reads unquoted y, n, yes, no, on and off as booleans)", describe(v))
	}
	return "want a string, got " + describe(v)
}

// describe renders a JSON value for an error message: scalars as they were
// written (long strings cut short), lists and objects by what they are.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return string(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		const max = 40
		if len(v) > max {
			return strconv.Quote(v[:max]) + "..."
		}
		return strconv.Quote(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
