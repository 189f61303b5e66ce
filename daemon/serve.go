package daemon

import (
	"context"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// serveOn registers the runtime's protocol on the node's rpc server: the
// one place where it meets the transport. Every call is authenticated by
// the mesh (rpc.CallerID names the session's peer); each handler decides
// what that caller may do.
func (rt *Runtime) serveOn(srv *rpc.Server) error {
	if err := srv.Handle(HostService, rt.serve); err != nil {
		return err
	}
	return srv.HandleStream(ImageService, rt.serveImage)
}

// serve answers HostService.
func (rt *Runtime) serve(ctx context.Context, req []byte) ([]byte, error) {
	from, _ := rpc.CallerID(ctx)
	if len(req) == 0 {
		return nil, rpc.Errorf(rpc.StatusBadRequest, "empty request")
	}
	reply, err := rt.dispatch(ctx, from, req[0], req[1:])
	if err != nil {
		return nil, remoteError(err)
	}
	return reply, nil
}

// dispatch runs the handler of op for a request from node from (this
// node itself when a local call takes the same path).
func (rt *Runtime) dispatch(ctx context.Context, from identity.NodeID, op byte, body []byte) ([]byte, error) {
	switch op {
	case opDeliver:
		req, err := parseDeliver(body)
		if err != nil {
			return nil, &Error{Code: CodeInvalid, Err: err}
		}
		reply, err := rt.handleDeliver(ctx, from, &req)
		if err != nil {
			return nil, err
		}
		return appendDeliverReply(nil, &reply), nil
	case opLocate:
		id, err := parseID(body)
		if err != nil {
			return nil, &Error{Code: CodeInvalid, Err: err}
		}
		return rt.handleLocate(id), nil
	case opInfo:
		id, err := parseID(body)
		if err != nil {
			return nil, &Error{Code: CodeInvalid, Err: err}
		}
		in := rt.hosted(id)
		if in == nil {
			return nil, &Error{Code: CodeNotFound, Daemon: id, Node: rt.self}
		}
		info := in.info()
		return appendInfo(nil, &info), nil
	case opMigrate:
		return rt.handleMigrate(ctx, from, body)
	case opPrepare:
		return rt.handlePrepare(from, body)
	case opChunk:
		return rt.handleChunk(from, body)
	case opRestore:
		return rt.handleRestore(from, body)
	case opReplay, opCutover:
		return rt.handleReplay(from, op, body)
	case opComplete:
		return rt.handleComplete(from, body)
	case opAbort:
		return rt.handleAbort(from, body)
	case opStatus:
		return rt.handleStatus(from, body)
	case opForward:
		return rt.handleForward(ctx, from, body)
	case opStandby:
		return rt.handleStandbyLog(from, body)
	case opHeld:
		return rt.handleHeld(from, body)
	case opPromote:
		return rt.handlePromote(from, body)
	case opSync:
		return rt.handleSync(ctx, from, body)
	}
	return nil, &Error{Code: CodeInvalid, Message: "unknown op"}
}
