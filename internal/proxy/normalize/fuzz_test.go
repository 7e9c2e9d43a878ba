package normalize

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzNormalizePath checks the promises of Path on any input: a
// normalized path starts with '/', holds only pchar, '/' and upper-case
// escapes, has no dot segment (and no "//" when merging), is a fixed point,
// and is what URL.EscapedPath writes upstream.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "/a/b/c", "//a//b", "/a/./b/../c", "/%2e%2e/%2E./x", "/a%2Fb%2f..%5Cc", `/a\..\b`,
		"/a%00", "/a%zz", "/..;/x", "/caf\xc3\xa9", "/a b|c", "/%252e", "/a/b/..", "/.", "/..",
	} {
		for mode := range byte(4) {
			f.Add(s, mode)
		}
	}
	f.Fuzz(func(t *testing.T, in string, mode byte) {
		o := []Options{Base, MergeSlashes, DecodeAndMergeSlashes, {EscapedSlashes: RejectEscapedSlashes}}[mode%4]
		out, rej := Path(in, o)
		if rej != nil {
			if out != "" {
				t.Fatalf("Path(%q) refused with a result %q", in, out)
			}
			return
		}
		if out == "" || out[0] != '/' {
			t.Fatalf("Path(%q) = %q: not absolute", in, out)
		}
		for i := 0; i < len(out); i++ {
			c := out[i]
			switch {
			case c == '%':
				if i+2 >= len(out) || !isUpperHex(out[i+1]) || !isUpperHex(out[i+2]) {
					t.Fatalf("Path(%q) = %q: bad escape at %d", in, out, i)
				}
				if v := unhex(out[i+1])<<4 | unhex(out[i+2]); isUnreserved(v) || v == 0 {
					t.Fatalf("Path(%q) = %q: escape of %q left", in, out, v)
				}
				i += 2
			case c != '/' && !isPchar(c):
				t.Fatalf("Path(%q) = %q: byte %q outside pchar", in, out, c)
			}
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("Path(%q) = %q: dot segment left", in, out)
			}
		}
		if o.MergeSlashes && strings.Contains(out, "//") {
			t.Fatalf("Path(%q) = %q: slashes not merged", in, out)
		}
		if again, rej := Path(out, o); rej != nil || again != out {
			t.Fatalf("Path(%q) = %q, but Path(%q) = %q, %v", in, out, out, again, rej)
		}
		u := &url.URL{Path: unescapePath(out), RawPath: out}
		if got := u.EscapedPath(); got != out {
			t.Fatalf("EscapedPath of %q = %q", out, got)
		}
	})
}
