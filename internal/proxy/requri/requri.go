// Package requri parses the request target of an origin-form request, as
// the sidecar's own HTTP/1.1 and HTTP/2 servers see it, into a url.URL
// exactly as url.ParseRequestURI would, without its allocation for the
// usual target.
package requri

import (
	"net/url"
	"strings"
)

// Parse sets *u to what url.ParseRequestURI makes of target. The usual
// target, a path of characters the url package leaves as they are (no
// query, no escapes), is a URL with only its Path, made here in place;
// anything else goes through the url package.
func Parse(u *url.URL, target string) error {
	if plainPath(target) {
		*u = url.URL{Path: target}
		return nil
	}
	v, err := url.ParseRequestURI(target)
	if err != nil {
		return err
	}
	*u = *v
	return nil
}

// plainPath reports whether p is an absolute path that url.URL keeps
// verbatim in Path, with no RawPath: nothing to unescape, and nothing
// its EscapedPath would escape.
func plainPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.~$&+,/:;=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}
