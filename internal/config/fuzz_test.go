package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzParse feeds Parse arbitrary input, which it gets from anyone who can
// reach "weft apply" or the HTTP API. Parse must never panic, must fail
// only with Errors, and what it accepts must survive the store: Encode then
// Decode, and EncodeYAML then Parse, give back the same resource.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.*"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.Reason == "" {
					t.Errorf("error without a reason: %#v", e)
				}
			}
			return
		}
		for _, r := range rs {
			if err := Validate(r); err != nil {
				t.Fatalf("Parse accepted what Validate rejects: %v", err)
			}
			enc, err := Encode(r)
			if err != nil {
				t.Fatalf("Encode(%s): %v", r, err)
			}
			dec, err := Decode(enc)
			if err != nil {
				t.Fatalf("Decode(%s): %v", enc, err)
			}
			if !proto.Equal(dec.Spec, r.Spec) {
				t.Fatalf("Encode/Decode changed the spec:\n%v\n%v", r.Spec, dec.Spec)
			}
			y, err := EncodeYAML(r)
			if err != nil {
				t.Fatalf("EncodeYAML(%s): %v", r, err)
			}
			again, err := Parse(y)
			if err != nil {
				t.Fatalf("Parse(EncodeYAML) of\n%s\n%v", y, err)
			}
			if len(again) != 1 || !proto.Equal(again[0].Spec, r.Spec) {
				t.Fatalf("EncodeYAML/Parse changed the resource:\n%s", y)
			}
		}
	})
}
