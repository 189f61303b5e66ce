package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"

	"github.com/netmesh/netmesh/identity"
)

// Codec turns typed requests and replies into bytes and back. Both ends
// of a service must use the same one; nothing on the wire names it.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec: encoding/json.
type JSON struct{}

// Marshal implements Codec.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// HandleTyped serves service with a typed handler, using the server's
// Codec: a request it cannot decode is answered with StatusBadRequest, a
// handler error with StatusHandlerError (unless it is an *Error choosing
// its own status, see Errorf), a reply it cannot encode with
// StatusHandlerError.
func HandleTyped[Req, Resp any](s *Server, service string, h func(ctx context.Context, req Req) (Resp, error)) error {
	codec := s.opts.Codec
	return s.Handle(service, func(ctx context.Context, body []byte) ([]byte, error) {
		var req Req
		if err := codec.Unmarshal(body, &req); err != nil {
			return nil, Errorf(StatusBadRequest, "decode request: %v", err)
		}
		resp, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		out, err := codec.Marshal(resp)
		if err != nil {
			return nil, Errorf(StatusHandlerError, "encode reply: %v", err)
		}
		return out, nil
	})
}

// HandleTypedStream serves the streaming service with a typed handler,
// which sends its values through w. Errors are answered as in HandleTyped.
func HandleTypedStream[Req, Resp any](s *Server, service string, h func(ctx context.Context, req Req, w *TypedWriter[Resp]) error) error {
	codec := s.opts.Codec
	return s.HandleStream(service, func(ctx context.Context, body []byte, w *ResponseWriter) error {
		var req Req
		if err := codec.Unmarshal(body, &req); err != nil {
			return Errorf(StatusBadRequest, "decode request: %v", err)
		}
		return h(ctx, req, &TypedWriter[Resp]{w: w, codec: codec})
	})
}

// TypedWriter sends the values of a typed streaming handler.
type TypedWriter[T any] struct {
	w     *ResponseWriter
	codec Codec
}

// Send encodes v and sends it as the next chunk, like ResponseWriter.Send.
// An encoding failure is returned as StatusHandlerError.
func (w *TypedWriter[T]) Send(ctx context.Context, v T) error {
	b, err := w.codec.Marshal(v)
	if err != nil {
		return Errorf(StatusHandlerError, "encode chunk: %v", err)
	}
	return w.w.Send(ctx, b)
}

// CallTyped is Call with values encoded by the client's Codec. Resp comes
// first so that Req can be inferred: CallTyped[Reply](ctx, c, node, svc, req).
// Encoding the request or decoding the reply fails with KindCodec.
func CallTyped[Resp, Req any](ctx context.Context, c *Client, node identity.NodeID, service string, req Req) (Resp, error) {
	return typed[Resp](c, node, service, req, func(body []byte) ([]byte, error) {
		return c.Call(ctx, node, service, body)
	})
}

// CallServiceTyped is CallService with values encoded by the client's
// Codec, as in CallTyped.
func CallServiceTyped[Resp, Req any](ctx context.Context, c *Client, service string, req Req) (Resp, error) {
	return typed[Resp](c, identity.NodeID{}, service, req, func(body []byte) ([]byte, error) {
		return c.CallService(ctx, service, body)
	})
}

// typed encodes req, calls do and decodes the reply.
func typed[Resp any](c *Client, node identity.NodeID, service string, req any, do func([]byte) ([]byte, error)) (Resp, error) {
	var resp Resp
	body, err := c.opts.Codec.Marshal(req)
	if err != nil {
		return resp, &Error{Kind: KindCodec, Service: service, Node: node, Err: err}
	}
	out, err := do(body)
	if err != nil {
		return resp, err
	}
	if err := c.opts.Codec.Unmarshal(out, &resp); err != nil {
		return resp, &Error{Kind: KindCodec, Service: service, Node: node, Err: err}
	}
	return resp, nil
}

// StreamTyped is Stream with values encoded by the client's Codec.
func StreamTyped[Resp, Req any](ctx context.Context, c *Client, node identity.NodeID, service string, req Req, opts ...StreamOption) (*TypedStream[Resp], error) {
	body, err := c.opts.Codec.Marshal(req)
	if err != nil {
		return nil, &Error{Kind: KindCodec, Service: service, Node: node, Err: err}
	}
	r, err := c.Stream(ctx, node, service, body, opts...)
	if err != nil {
		return nil, err
	}
	return &TypedStream[Resp]{r: r, codec: c.opts.Codec}, nil
}

// TypedStream is a ResponseStream whose chunks are decoded values.
type TypedStream[T any] struct {
	r     *ResponseStream
	codec Codec
}

// Recv returns the next value, io.EOF after the last, or the call's
// *Error. A chunk that does not decode fails with KindCodec and closes
// the stream.
func (s *TypedStream[T]) Recv() (T, error) {
	var v T
	b, err := s.r.Recv()
	if err != nil {
		return v, err
	}
	if err := s.codec.Unmarshal(b, &v); err != nil {
		s.r.cl.st.Reset(resetCancelled) // cancel the handler
		return v, s.r.end(&Error{Kind: KindCodec, Service: s.r.cl.service, Node: s.r.cl.node, Err: err})
	}
	return v, nil
}

// All returns an iterator over the values, like ResponseStream.All.
func (s *TypedStream[T]) All() iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			v, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(v, err) || err != nil {
				s.r.Close()
				return
			}
		}
	}
}

// Grant allows the server n more values; see ResponseStream.Grant.
func (s *TypedStream[T]) Grant(n int) error { return s.r.Grant(n) }

// Close ends the stream; see ResponseStream.Close.
func (s *TypedStream[T]) Close() { s.r.Close() }

// Node returns the node serving the stream.
func (s *TypedStream[T]) Node() identity.NodeID { return s.r.Node() }
