package strmatch

import (
	"regexp"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		m    Matcher
		in   string
		want bool
	}{
		{"exact matches only the whole value", New(Exact, "jason", false), "jason", true},
		{"exact is case sensitive by default", New(Exact, "jason", false), "Jason", false},
		{"exact can ignore case", New(Exact, "jason", true), "JASON", true},
		{"prefix matches the start", New(Prefix, "/api", false), "/api/v1", true},
		{"prefix ignoring case", New(Prefix, "/API", true), "/api/v1", true},
		{"prefix longer than the value fails", New(Prefix, "/api/v1", true), "/api", false},
		{"suffix matches the end", New(Suffix, ".svc", false), "a.svc", true},
		{"suffix ignoring case", New(Suffix, ".SVC", true), "a.svc", true},
		{"contains finds the middle", New(Contains, "mid", false), "a-mid-b", true},
		{"contains ignoring case", New(Contains, "MiD", true), "a-mId-b", true},
		{"contains ignoring case fails when absent", New(Contains, "x", true), "abc", false},
		{"regex matches as compiled", NewRegex(regexp.MustCompile(`^v[0-9]$`)), "v2", true},
		{"regex refuses others", NewRegex(regexp.MustCompile(`^v[0-9]$`)), "v22", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.Match(tt.in); got != tt.want {
				t.Fatalf("Match(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
