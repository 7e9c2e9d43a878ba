package meshbench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// nginxPackage is the Debian package the harness installs when nginx is
// missing: the smallest build that has the proxy and SSL modules.
const nginxPackage = "nginx-light"

// findNginx returns the nginx binary's path, or "" if there is none.
func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// ensureNginx returns the nginx binary, installing Debian's nginx-light
// with apt-get when it is missing and the harness runs as root. The error
// says why the nginx paths cannot run.
func ensureNginx(ctx context.Context, log *slog.Logger) (string, error) {
	if p := findNginx(); p != "" {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("nginx is not installed and the harness is not root, so it cannot install it: run `apt-get install %s` as root", nginxPackage)
	}
	aptGet, err := exec.LookPath("apt-get")
	if err != nil {
		return "", fmt.Errorf("nginx is not installed and there is no apt-get to install %s with", nginxPackage)
	}
	apt := func(args ...string) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, aptGet, args...)
		// No questions; and where a policy-rc.d does not forbid it, Debian
		// starts the nginx service on install: the harness never uses it.
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, lastLines(string(out), 15))
		}
		return nil
	}
	log.Info("installing nginx with apt-get (once)", "package", nginxPackage)
	install := []string{"install", "-y", "--no-install-recommends", nginxPackage}
	if err := apt(install...); err != nil {
		log.Info("apt-get install failed; updating the package lists and trying again", "err", err)
		if err := apt("update"); err != nil {
			return "", err
		}
		if err := apt(install...); err != nil {
			return "", err
		}
	}
	if p := findNginx(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("apt-get installed %s but no nginx binary is to be found", nginxPackage)
}

// nginxVersion is e.g. "nginx/1.22.1".
func nginxVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return "unknown"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
}

// nginxConf is one nginx of a pair: it listens on Listen and proxies
// everything to Upstream over a keep-alive pool.
type nginxConf struct {
	Dir      string // prefix: pid file, error log, temp paths
	Listen   string
	Upstream string
	// AsRoot keeps the worker as root: the harness's temp directories are
	// private to the user that made them.
	AsRoot bool
	// ServerTLS makes Listen a TLS 1.3 port that requires a client
	// certificate signed by TLS.CA.
	ServerTLS bool
	// UpstreamTLS dials Upstream with TLS 1.3, verifying the server and
	// presenting the client certificate, with session reuse.
	UpstreamTLS bool
	TLS         tlsFiles
}

var nginxTemplate = template.Must(template.New("nginx.conf").Parse(`# Written by meshbench; one worker, keep-alive everywhere, no access log.
daemon off;
master_process on;
worker_processes 1;
{{- if .AsRoot}}
user root;
{{- end}}
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path {{.Dir}}/client_body;
    proxy_temp_path {{.Dir}}/proxy;
    fastcgi_temp_path {{.Dir}}/fastcgi;
    uwsgi_temp_path {{.Dir}}/uwsgi;
    scgi_temp_path {{.Dir}}/scgi;
    # Go's servers (weft, fortio) never close a keep-alive connection after
    # N requests; nor does nginx here.
    keepalive_requests 1000000;

    upstream up {
        server {{.Upstream}};
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen {{.Listen}}{{if .ServerTLS}} ssl{{end}};
{{- if .ServerTLS}}
        ssl_protocols TLSv1.3;
        ssl_certificate {{.TLS.ServerCert}};
        ssl_certificate_key {{.TLS.ServerKey}};
        ssl_client_certificate {{.TLS.CA}};
        ssl_verify_client on;
        ssl_session_cache shared:meshbench:1m;
{{- end}}

        location / {
            proxy_pass {{if .UpstreamTLS}}https{{else}}http{{end}}://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{{- if .UpstreamTLS}}
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_session_reuse on;
            proxy_ssl_server_name on;
            proxy_ssl_name {{.TLS.ServerName}};
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {{.TLS.CA}};
            proxy_ssl_certificate {{.TLS.ClientCert}};
            proxy_ssl_certificate_key {{.TLS.ClientKey}};
{{- end}}
        }
    }
}
`))

func (c nginxConf) render() (string, error) {
	var b bytes.Buffer
	if err := nginxTemplate.Execute(&b, c); err != nil {
		return "", err
	}
	return b.String(), nil
}

// nginxProxy is one running nginx: its master and its single worker.
type nginxProxy struct {
	master    *process
	workerPID int
	addr      string
}

// startNginx checks the configuration, starts nginx and waits until it
// answers on its port and its worker is known.
func startNginx(ctx context.Context, ps *processes, bin, name string, c nginxConf) (*nginxProxy, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	c.AsRoot = os.Geteuid() == 0
	text, err := c.render()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(c.Dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	errLog := filepath.Join(c.Dir, "error.log")
	args := []string{"-p", c.Dir, "-c", conf, "-e", errLog}
	if out, err := exec.CommandContext(ctx, bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: nginx -t refused its configuration %s: %w\n%s", name, conf, err, out)
	}
	p, err := ps.start(name, bin, args...)
	if err != nil {
		return nil, err
	}
	n := &nginxProxy{master: p, addr: c.Listen}
	err = waitFor(ctx, p, 10*time.Second, name+" worker started", func() error {
		kids, err := childrenOf(p.pid())
		if err != nil {
			return err
		}
		if len(kids) != 1 {
			return fmt.Errorf("%d worker processes, want 1", len(kids))
		}
		n.workerPID = kids[0]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w\n%s error log:\n%s", err, name, tailFile(errLog, 20))
	}
	if !c.ServerTLS {
		err = waitFor(ctx, p, 10*time.Second, name+" answers", func() error {
			resp, err := http.Get("http://" + c.Listen + "/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w\n%s error log:\n%s", err, name, tailFile(errLog, 20))
		}
	}
	return n, nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return lastLines(string(b), n)
}
