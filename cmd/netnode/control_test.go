package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startControl serves methods on a socket in a temporary directory.
func startControl(t *testing.T, methods map[string]method) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.sock")
	s, err := listenControl(path, slog.New(slog.DiscardHandler), methods)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.serve(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		s.close()
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	})
	return path
}

func TestControlProtocol(t *testing.T) {
	cancelled := make(chan struct{})
	path := startControl(t, map[string]method{
		"echo": func(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			var p nodeParams
			if err := decodeParams(raw, &p); err != nil {
				return nil, err
			}
			return p, nil
		},
		"count": func(_ context.Context, _ json.RawMessage, more func(any) error) (any, error) {
			for i := range 3 {
				if err := more(i); err != nil {
					return nil, err
				}
			}
			return "done", nil
		},
		"fail": func(context.Context, json.RawMessage, func(any) error) (any, error) {
			return nil, errors.New("it broke")
		},
		"forever": func(ctx context.Context, _ json.RawMessage, more func(any) error) (any, error) {
			more("started")
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		},
	})
	ctx := context.Background()
	c, err := dialControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Several requests on one connection, answered in order.
	res, err := c.call(ctx, "echo", nodeParams{Node: "x"}, nil)
	if err != nil || string(res) != `{"node":"x"}` {
		t.Errorf("echo: %s, %v", res, err)
	}
	var got []string
	res, err = c.call(ctx, "count", nil, func(raw json.RawMessage) error {
		got = append(got, string(raw))
		return nil
	})
	if err != nil || string(res) != `"done"` || len(got) != 3 || got[2] != "2" {
		t.Errorf("count: %s %v, %v", res, got, err)
	}
	var ce *controlError
	if _, err := c.call(ctx, "nope", nil, nil); !errors.As(err, &ce) || ce.Code != codeUnknownMethod {
		t.Errorf("unknown method: %v", err)
	}
	if _, err := c.call(ctx, "echo", map[string]int{"colour": 1}, nil); !errors.As(err, &ce) || ce.Code != codeBadRequest {
		t.Errorf("unknown parameter: %v", err)
	}
	if _, err := c.call(ctx, "fail", nil, nil); !errors.As(err, &ce) || ce.Code != codeFailed || ce.Message != "it broke" {
		t.Errorf("failing method: %v", err)
	}

	// A client that hangs up cancels its streaming request.
	cctx, cancel := context.WithCancel(ctx)
	_, err = c.call(cctx, "forever", nil, func(json.RawMessage) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the method did not see the client hang up")
	}

	// A line that is not JSON gets an error and the connection closes.
	raw, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("hello\n"))
	line, _ := io.ReadAll(raw)
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil || resp.Error == nil || resp.Error.Code != codeBadRequest {
		t.Errorf("garbage request: %s", line)
	}
}

func TestListenControlExisting(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)

	// A regular file is never replaced.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(file, log, nil); err == nil {
		t.Error("listened over a regular file")
	}

	// A stale socket, whose node died, is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, err := listenControl(stale, log, nil)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer s.close()
	fi, err := os.Stat(stale)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v", fi.Mode(), err)
	}

	// A live one is not.
	if _, err := listenControl(stale, log, nil); err == nil {
		t.Error("took over a live socket")
	}
}

// TestControlHalfClose checks that a client that shuts down its writing
// side after its requests, as `echo ... | socat - UNIX-CONNECT:...` does,
// still gets every answer: only a client that closes the connection
// cancels the request in flight.
func TestControlHalfClose(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	path := startControl(t, map[string]method{
		"slow": func(ctx context.Context, _ json.RawMessage, more func(any) error) (any, error) {
			if err := more("started"); err != nil {
				return nil, err
			}
			// Long enough that the server has seen the end of the
			// requests before it answers.
			select {
			case <-ctx.Done():
				cancelled <- struct{}{}
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			return "done", nil
		},
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"id":1,"method":"slow"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"result":"started","more":true}` + "\n" + `{"id":1,"result":"done"}` + "\n"
	if string(out) != want {
		t.Errorf("after a half-close the client got\n%s\nwant\n%s", out, want)
	}
	select {
	case <-cancelled:
		t.Error("the half-close cancelled the request")
	default:
	}
}

// TestControlHangUpWhileIdle checks that a client that closes its
// connection cancels a streaming request that has nothing to send, after
// the client half-closed first.
func TestControlHangUpWhileIdle(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	path := startControl(t, map[string]method{
		"forever": func(ctx context.Context, _ json.RawMessage, more func(any) error) (any, error) {
			more("started")
			close(started)
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		},
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(`{"id":1,"method":"forever"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	<-started
	c.Close()
	<-cancelled // hangs, and the test times out, if the hang-up goes unseen
}
