package requri

import (
	"net/url"
	"reflect"
	"testing"
)

// requestTargets are request targets of every kind Parse
// meets: plain paths it makes itself, and the rest.
var requestTargets = []string{
	"/", "/reviews/1", "/a//b", "//host/path", "/a:b;c=d,e+f$g&h@i~j-k_l.m", "/../x", "/a.b/./c",
	"/a?b=c", "/a?", "/a#frag", "/a%20b", "/a%2Fb", "/a b", "/a\"b", "/a!b*c(d)'e", "/ü", "/a\x7f",
	"/a\x00", "*", "", "a/b", "http://host/path", "/%zz", "/[x]", "/a|b", "/a\\b",
}

func TestParseRequestURIAgreesWithURL(t *testing.T) {
	for _, target := range requestTargets {
		checkParseRequestURI(t, target)
	}
}

func FuzzParse(f *testing.F) {
	for _, target := range requestTargets {
		f.Add(target)
	}
	f.Fuzz(checkParseRequestURI)
}

// checkParseRequestURI fails t unless Parse makes of target
// what url.ParseRequestURI does.
func checkParseRequestURI(t *testing.T, target string) {
	want, wantErr := url.ParseRequestURI(target)
	var got url.URL
	err := Parse(&got, target)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Parse(%q): error %v, url.ParseRequestURI's %v", target, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(&got, want) {
		t.Errorf("Parse(%q) = %#v, url.ParseRequestURI's %#v", target, got, *want)
	}
	if plainPath(target) && got.String() != target {
		t.Errorf("Parse(%q).String() = %q", target, got.String())
	}
}
