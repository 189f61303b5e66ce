package main

// The control socket: a unix socket through which the inspection commands
// talk to a running node.
//
// Protocol: newline-delimited JSON. A client writes one request per line,
//
//	{"id": 1, "method": "peers", "params": {...}}
//
// and the node answers each with one or more response lines carrying the
// same id. A response is either {"id": 1, "result": {...}} or
// {"id": 1, "error": {"code": "unknown_node", "message": "..."}}. A
// streaming method (ping) sends intermediate results with "more": true;
// the last line of an answer never has "more". Requests on one connection
// are answered in order. Closing the connection cancels the request in
// flight.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// request is one line a client sends.
type request struct {
	ID     uint64          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// response is one line the node sends.
type response struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *controlError   `json:"error,omitempty"`
	More   bool            `json:"more,omitempty"`
}

// controlError is an error that crosses the control socket. Code is
// stable; Message is for people.
type controlError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *controlError) Error() string { return e.Message }

// Error codes of the control protocol.
const (
	codeBadRequest       = "bad_request"       // malformed request or parameters
	codeUnknownMethod    = "unknown_method"    // no such method
	codeUnknownNode      = "unknown_node"      // no peer matches the name
	codeAmbiguousNode    = "ambiguous_node"    // a prefix matches several peers
	codeNodeDown         = "node_down"         // the peer has no session
	codePermissionDenied = "permission_denied" // the client's uid may not use the socket
	codeFailed           = "failed"            // anything else
)

// errorf returns a controlError with code.
func errorf(code, format string, args ...any) *controlError {
	return &controlError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// maxRequestLine bounds one request line: room for the largest call
// request (1 MiB, base64 in JSON) or publish payload.
const maxRequestLine = 2 << 20

// method answers one request. A streaming method calls more for each
// intermediate result; the value it returns is the last one.
type method func(ctx context.Context, params json.RawMessage, more func(any) error) (any, error)

// controlServer serves the control socket.
type controlServer struct {
	ln      *net.UnixListener
	path    string
	uid     int // besides root, the only uid allowed to connect
	log     *slog.Logger
	methods map[string]method
	wg      sync.WaitGroup
}

// listenControl creates the control socket at path with mode 0600. A stale
// socket left by a node that died is replaced; a live one is an error, and
// so is a path that is not a socket.
func listenControl(path string, log *slog.Logger, methods map[string]method) (*controlServer, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: the path exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another netnode is running there (use --control to pick another path)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: removing the stale socket: %w", path, err)
		}
	}
	if err := prepareControlDir(path); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Connecting needs write permission on the socket file. Until the
	// chmod, the umask decides; the peer credential check below covers
	// that moment.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &controlServer{ln: ln, path: path, uid: os.Getuid(), log: log, methods: methods}, nil
}

// serve accepts connections until ctx ends or the listener is closed, then
// waits for the connections it serves to finish. Ending ctx cancels them.
func (s *controlServer) serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("control socket: accept failed", "err", err)
			}
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
		}()
	}
	s.wg.Wait()
}

// close stops the listener and removes the socket file.
func (s *controlServer) close() error {
	err := s.ln.Close() // unlinks the socket file
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// serveConn answers the requests of one client, in order.
func (s *controlServer) serveConn(ctx context.Context, c *net.UnixConn) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	readerDone := make(chan struct{})
	defer func() {
		stop()
		cancel()
		c.Close()
		<-readerDone
	}()
	enc := json.NewEncoder(c)

	uid, err := peerUID(c)
	if err != nil || (uid != s.uid && uid != 0) {
		s.log.Warn("control socket: refused a client", "uid", uid, "err", err)
		enc.Encode(response{Error: errorf(codePermissionDenied, "uid %d may not use the control socket of a node run by uid %d", uid, s.uid)})
		close(readerDone)
		return
	}

	// The reader runs apart from the handlers so that a client that hangs
	// up cancels the request in flight (a streaming ping, say).
	type line struct {
		req request
		err error
	}
	lines := make(chan line)
	go func() {
		defer close(readerDone)
		defer cancel()
		eof := func() bool {
			defer close(lines)
			sc := bufio.NewScanner(c)
			sc.Buffer(make([]byte, 4096), maxRequestLine)
			for sc.Scan() {
				var l line
				if err := json.Unmarshal(sc.Bytes(), &l.req); err != nil {
					l.err = errorf(codeBadRequest, "request is not JSON: %v", err)
				}
				select {
				case lines <- l:
				case <-ctx.Done():
					return false
				}
			}
			if err := sc.Err(); err != nil {
				// A line too long is the client's mistake, which it is
				// told. Any other error (a reset: the client closed with
				// answers unread) is a hang-up, which cancels the request
				// in flight: telling the main loop first would wait for
				// that very request.
				if errors.Is(err, bufio.ErrTooLong) && ctx.Err() == nil {
					select {
					case lines <- line{err: errorf(codeBadRequest, "reading request: %v", err)}:
					case <-ctx.Done():
					}
				}
				return false
			}
			return ctx.Err() == nil
		}()
		if eof {
			// The end of the requests is not a hang-up: a client that
			// only shut down its writing side (echo ... | socat, nc -N)
			// still reads the answers. Cancel when it closes for good.
			waitHangUp(c)
		}
	}()

	for l := range lines {
		if l.err != nil {
			enc.Encode(response{Error: asControlError(l.err)})
			return
		}
		if err := s.answer(ctx, enc, l.req); err != nil {
			return // the client is gone
		}
	}
}

// answer runs one request and writes its response lines. It returns an
// error only when writing fails.
func (s *controlServer) answer(ctx context.Context, enc *json.Encoder, req request) error {
	reply := func(v any, more bool) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return enc.Encode(response{ID: req.ID, Result: raw, More: more})
	}
	m, ok := s.methods[req.Method]
	if !ok {
		return enc.Encode(response{ID: req.ID, Error: errorf(codeUnknownMethod, "unknown method %q", req.Method)})
	}
	res, err := m(ctx, req.Params, func(v any) error { return reply(v, true) })
	if err != nil {
		return enc.Encode(response{ID: req.ID, Error: asControlError(err)})
	}
	return reply(res, false)
}

// asControlError gives err a code, "failed" unless it already has one.
func asControlError(err error) *controlError {
	var ce *controlError
	if errors.As(err, &ce) {
		return ce
	}
	return &controlError{Code: codeFailed, Message: err.Error()}
}

// controlClient is a connection to a node's control socket.
type controlClient struct {
	conn net.Conn
	sc   *bufio.Scanner
	next uint64
}

// dialControl connects to the node at path. Its error says whether no
// node is running there or the socket cannot be used.
func dialControl(ctx context.Context, path string) (*controlClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("no netnode running at %s: %w (start one with netnode run, or point --control at its socket)", path, err)
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := checkServerUID(conn.(*net.UnixConn), path); err != nil {
		conn.Close()
		return nil, err
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	return &controlClient{conn: conn, sc: sc}, nil
}

// checkServerUID checks that the process serving the socket at path runs
// as this user or root, before the client sends it anything: the default
// path in /tmp is open to any user, who could listen there first and
// read the requests (payloads, tokens) and forge the answers. Root
// trusts any node, so that it can inspect the nodes of every user.
func checkServerUID(c *net.UnixConn, path string) error {
	self := os.Getuid()
	uid, err := peerUID(c)
	switch {
	case err != nil:
		return fmt.Errorf("control socket %s: checking who serves it: %w", path, err)
	case uid != self && uid != 0 && self != 0:
		return fmt.Errorf("control socket %s is served by uid %d, not by this user (uid %d) or root: refusing to use it (is --control right?)", path, uid, self)
	}
	return nil
}

// Close closes the connection.
func (c *controlClient) Close() error { return c.conn.Close() }

// call sends one request and returns its final result. For a streaming
// method, more receives each intermediate result. Ending ctx abandons the
// call and closes the connection.
func (c *controlClient) call(ctx context.Context, method string, params any, more func(json.RawMessage) error) (json.RawMessage, error) {
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()
	c.next++
	req := request{ID: c.next, Method: method}
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			return nil, err
		}
		req.Params = raw
	}
	// A node that refuses the client answers before reading the request
	// and hangs up, so a failed write is reported only if no answer
	// explains it.
	writeErr := json.NewEncoder(c.conn).Encode(req)
	for {
		if !c.sc.Scan() {
			err := cmp.Or(writeErr, c.sc.Err(), io.ErrUnexpectedEOF)
			return nil, c.connErr(ctx, err)
		}
		var resp response
		if err := json.Unmarshal(c.sc.Bytes(), &resp); err != nil {
			return nil, fmt.Errorf("control socket: bad response: %w", err)
		}
		switch {
		case resp.Error != nil:
			return nil, resp.Error
		case resp.ID != req.ID:
			return nil, fmt.Errorf("control socket: response for request %d, want %d", resp.ID, req.ID)
		case !resp.More:
			return resp.Result, nil
		case more != nil:
			if err := more(resp.Result); err != nil {
				return nil, err
			}
		}
	}
}

// connErr explains a failed read or write: the caller's context ended, or
// the node went away.
func (c *controlClient) connErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("control socket: the node closed the connection: %w", err)
}
