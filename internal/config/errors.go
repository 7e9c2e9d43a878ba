package config

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of one resource. Its Error reads
//
//	VirtualService default/reviews: spec.http[0].route[1].weight: weights sum to 90, want 100
//
// so an operator can find the field without reading the whole document.
type FieldError struct {
	// Resource names the resource, "VirtualService default/reviews", or,
	// when the document is too broken to name one, its place in the input:
	// "document 2".
	Resource string `json:"resource,omitempty"`
	// Path is the field, "spec.http[0].route[1].weight"; empty when the
	// problem is with the document as a whole.
	Path string `json:"path,omitempty"`
	// Reason says what is wrong, in lowercase: "unknown field".
	Reason string `json:"reason"`
}

func (e FieldError) Error() string {
	var b strings.Builder
	for _, s := range []string{e.Resource, e.Path} {
		if s != "" {
			b.WriteString(s)
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in one input, in the order of the input. It
// is what Parse, Decode and Validate return, so that one run shows an
// operator everything to fix, not just the first thing.
type Errors []FieldError

// Error prints one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the individual FieldErrors.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// errorList collects FieldErrors for one resource.
type errorList struct {
	resource string
	errs     Errors
}

func (l *errorList) add(path, format string, args ...any) {
	l.errs = append(l.errs, FieldError{Resource: l.resource, Path: path, Reason: fmt.Sprintf(format, args...)})
}

var (
	_ error = FieldError{}
	_ error = Errors(nil)
)
