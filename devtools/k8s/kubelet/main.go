// Command leap0-kubelet is the kubelet's HTTPS endpoint for the local pod runner of
// `leap0 dev control-plane up --kubelet` (devtools/leap0_dev/runner/kubelet.py starts it).
//
// kube-apiserver reaches a node's kubelet for `kubectl exec`, `kubectl logs` and the SDKs' exec: over TLS, on
// the port the Node advertises (status.daemonEndpoints.kubeletEndpoint.port), authenticating with its kubelet
// client certificate. For exec it speaks SPDY to the kubelet (it translates clients' WebSockets to SPDY since
// KEP-4006). This program is that endpoint and nothing more:
//
//   - TLS with the serving certificate given, client certificates required and verified against the client
//     CA given; with -client-cn only that common name is accepted (the API server's kubelet client);
//   - /exec/{namespace}/{pod}/{container} (and the form with the pod's uid): the kubelet's own streaming
//     server code (k8s.io/cri-streaming, the package the kubelet's CRI streaming server uses) accepts SPDY
//     and WebSocket clients and hands the streams to an Executor that runs the command through the runner's
//     local exec endpoint with client-go's WebSocket executor (v5.channel.k8s.io): the runner runs it in the
//     container as it runs the container (its environment, directory and cgroup);
//   - /containerLogs/{namespace}/{pod}/{container}: proxied to the runner, which reads the container's log;
//   - /healthz.
//
// The runner's endpoint takes a bearer token (the environment variable LEAP0_KUBELET_BACKEND_TOKEN). The
// first line on stdout is "listening on HOST:PORT"; the program stops when its stdin closes (the runner
// ended) or on SIGTERM/SIGINT.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	client "k8s.io/client-go/tools/remotecommand"
	streaming "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// TokenEnv names the environment variable holding the runner endpoint's bearer token.
const TokenEnv = "LEAP0_KUBELET_BACKEND_TOKEN"

// The kubelet's defaults (its --streaming-connection-idle-timeout is 4h; stream creation 30 s).
const (
	idleTimeout           = 4 * time.Hour
	streamCreationTimeout = streaming.DefaultStreamCreationTimeout
)

// The protocols the kubelet's streaming server offers to SPDY clients, newest first.
var protocols = streaming.SupportedStreamingProtocols

type options struct {
	listen, certFile, keyFile, clientCAFile, clientCN, backend, token string
}

func main() {
	var opts options
	flag.StringVar(&opts.listen, "listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	flag.StringVar(&opts.certFile, "tls-cert-file", "", "the serving certificate (PEM)")
	flag.StringVar(&opts.keyFile, "tls-private-key-file", "", "the serving certificate's key (PEM)")
	flag.StringVar(&opts.clientCAFile, "client-ca-file", "", "CA bundle that client certificates must chain to")
	flag.StringVar(&opts.clientCN, "client-cn", "", "if set, the only client certificate common name accepted")
	flag.StringVar(&opts.backend, "backend", "", "the runner's local endpoint, http://127.0.0.1:PORT")
	flag.Parse()
	opts.token = os.Getenv(TokenEnv)
	if opts.certFile == "" || opts.keyFile == "" || opts.clientCAFile == "" || opts.backend == "" {
		fmt.Fprintln(os.Stderr, "leap0-kubelet: -tls-cert-file, -tls-private-key-file, -client-ca-file and -backend are required")
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "leap0-kubelet:", err)
		os.Exit(1)
	}
}

func run(opts options) error {
	backend, err := url.Parse(opts.backend)
	if err != nil || backend.Scheme != "http" || backend.Host == "" {
		return fmt.Errorf("-backend %q: want http://HOST:PORT", opts.backend)
	}
	tlsConfig, err := serverTLS(opts)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return err
	}
	server := &http.Server{
		Handler:           handler(opts, backend),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(os.Stderr, "leap0-kubelet: ", 0),
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	served := make(chan error, 1)
	go func() { served <- server.ServeTLS(listener, "", "") }()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case err := <-served:
		return err
	case <-stop:
	case <-stdinClosed:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
	return nil
}

func serverTLS(opts options) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(opts.certFile, opts.keyFile)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	pem, err := os.ReadFile(opts.clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA %s: no certificate found", opts.clientCAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
		// SPDY needs HTTP/1.1 (an upgraded connection), as on the kubelet.
		NextProtos: []string{"http/1.1"},
	}, nil
}

func handler(opts options, backend *url.URL) http.Handler {
	executor := &runnerExecutor{backend: backend, token: opts.token}
	logs := httputil.NewSingleHostReverseProxy(backend)
	logs.FlushInterval = -1 // `kubectl logs -f`: each write goes out at once
	direct := logs.Director
	logs.Director = func(r *http.Request) {
		direct(r)
		r.Header.Set("Authorization", "Bearer "+opts.token)
	}

	exec := func(w http.ResponseWriter, r *http.Request) {
		streamOpts, err := streaming.NewOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		command := r.URL.Query()["command"]
		if len(command) == 0 {
			http.Error(w, "you must specify at least 1 command", http.StatusBadRequest)
			return
		}
		pod := target{namespace: r.PathValue("namespace"), pod: r.PathValue("pod")}
		streaming.ServeExec(w, r, executor, pod.String(), r.PathValue("uid"), r.PathValue("container"), command,
			streamOpts, idleTimeout, streamCreationTimeout, protocols)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", exec)
	mux.HandleFunc("/exec/{namespace}/{pod}/{uid}/{container}", exec)
	mux.Handle("GET /containerLogs/{namespace}/{pod}/{container}", logs)
	return authorized(opts.clientCN, mux)
}

// authorized lets through the client certificate named clientCN (any verified client when it is empty).
func authorized(clientCN string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if name := r.TLS.PeerCertificates[0].Subject.CommonName; clientCN != "" && name != clientCN {
			http.Error(w, fmt.Sprintf("Forbidden (user=%s)", name), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// target is a pod as the Executor receives it: "namespace/pod".
type target struct{ namespace, pod string }

func (t target) String() string { return t.namespace + "/" + t.pod }

func parseTarget(name string) (target, error) {
	namespace, pod, ok := strings.Cut(name, "/")
	if !ok {
		return target{}, fmt.Errorf("pod %q: want namespace/name", name)
	}
	return target{namespace: namespace, pod: pod}, nil
}

// runnerExecutor runs a command through the runner's exec endpoint (the pods/exec WebSocket protocol).
type runnerExecutor struct {
	backend *url.URL
	token   string
}

func (e *runnerExecutor) ExecInContainer(ctx context.Context, name string, uid string, container string, cmd []string,
	in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan streaming.TerminalSize, timeout time.Duration) error {
	pod, err := parseTarget(name)
	if err != nil {
		return err
	}
	query := url.Values{}
	query.Set("container", container)
	for _, arg := range cmd {
		query.Add("command", arg)
	}
	query.Set("stdin", strconv.FormatBool(in != nil))
	query.Set("stdout", strconv.FormatBool(out != nil))
	query.Set("stderr", strconv.FormatBool(errOut != nil))
	query.Set("tty", strconv.FormatBool(tty))
	location := *e.backend
	location.Path = fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/exec", url.PathEscape(pod.namespace), url.PathEscape(pod.pod))
	location.RawQuery = query.Encode()
	executor, err := client.NewWebSocketExecutor(&rest.Config{Host: e.backend.String(), BearerToken: e.token}, "GET", location.String())
	if err != nil {
		return err
	}
	stream := client.StreamOptions{Tty: tty}
	if in != nil {
		stream.Stdin = in
	}
	if out != nil {
		stream.Stdout = out
	}
	if errOut != nil {
		stream.Stderr = errOut
	}
	if resize != nil {
		stream.TerminalSizeQueue = sizeQueue(resize)
	}
	err = executor.StreamWithContext(ctx, stream)
	var exit utilexec.CodeExitError
	if errors.As(err, &exit) {
		// The container runtime's words, which the streaming server prefixes with "command terminated with
		// non-zero exit code: ".
		return utilexec.CodeExitError{Err: fmt.Errorf("error executing command %v, exit code %d", cmd, exit.Code), Code: exit.Code}
	}
	return err
}

// sizeQueue hands terminal resizes from the streaming server to client-go.
type sizeQueue <-chan streaming.TerminalSize

func (q sizeQueue) Next() *client.TerminalSize {
	size, ok := <-q
	if !ok {
		return nil
	}
	return &client.TerminalSize{Width: size.Width, Height: size.Height}
}
