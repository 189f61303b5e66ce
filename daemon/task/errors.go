package task

import (
	"errors"
	"fmt"
	"strings"

	"github.com/netmesh/netmesh/identity"
)

// Code is the stable category of a task error. It travels between nodes
// as its text.
type Code string

// The standard codes.
const (
	// CodeContractViolation: parameters, an event or an output broke the
	// skill's contract (its JSON Schemas or statuses), or a task id was
	// reused for other work. The handler did not run (parameters) or its
	// output was not passed off as success.
	CodeContractViolation Code = "CONTRACT_VIOLATION"
	// CodeDependencyMissing: the handler lacks something it needs (a
	// model, a driver, a file); handlers return it.
	CodeDependencyMissing Code = "DEPENDENCY_MISSING"
	// CodeResourceExhausted: the worker's queue or a per-submitter bound
	// is full, or it is draining. The task did not run: the submitter
	// tries another node.
	CodeResourceExhausted Code = "RESOURCE_EXHAUSTED"
	// CodeLimitExceeded: the task exceeds a size or count limit
	// (parameters, output, events, a chain) or a handler limit.
	CodeLimitExceeded Code = "LIMIT_EXCEEDED"
	// CodeTimeout: the task's deadline passed before it finished (queued
	// or running).
	CodeTimeout Code = "TIMEOUT"
	// CodeLateResult: the result reached the submitter after the task's
	// deadline, and was refused.
	CodeLateResult Code = "LATE_RESULT"
)

// The codes this package adds.
const (
	// CodeCancelled: the task was cancelled, by Cancel or by a worker
	// shutting down.
	CodeCancelled Code = "CANCELLED"
	// CodeLost: the worker holding the task died, left or forgot it.
	CodeLost Code = "LOST"
	// CodeHandlerError: the handler failed with an error that carries no
	// code.
	CodeHandlerError Code = "HANDLER_ERROR"
	// CodeUnknownSkill: the node serves no such skill.
	CodeUnknownSkill Code = "UNKNOWN_SKILL"
	// CodeNoWorker: no node matching the skill and filter could take the
	// task.
	CodeNoWorker Code = "NO_WORKER"
	// CodeProvenance: the task's forwarding chain does not verify.
	CodeProvenance Code = "PROVENANCE"
	// CodeNotFound: the submitter holds no task with that id.
	CodeNotFound Code = "NOT_FOUND"
	// CodePermissionDenied: the skill requires a group the submitter's
	// membership certificate does not name (Skill.Groups). The task did
	// not run.
	CodePermissionDenied Code = "PERMISSION_DENIED"
)

// Error is the error of a task, or of a call about one. Use errors.As to
// read it, or errors.Is with the sentinel of its code (errors.Is(err,
// task.ErrTimeout)).
type Error struct {
	Code Code `json:"code"`
	// Message says what happened, for people.
	Message string `json:"message,omitempty"`
	// Task is the task concerned; zero if none.
	Task ID `json:"task,omitzero"`
	// Skill and Filter are what the task asked for, set on placement
	// errors.
	Skill  string `json:"skill,omitempty"`
	Filter string `json:"filter,omitempty"`
	// Node is the worker concerned; zero if none.
	Node identity.NodeID `json:"node,omitzero"`
	// Err is an underlying error (an rpc error, say), or nil. It is not
	// stored.
	Err error `json:"-"`
}

// Errorf returns an *Error with code and a formatted message, for a
// handler to return.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("task")
	if !e.Task.IsZero() {
		b.WriteString(" " + e.Task.String())
	}
	if e.Skill != "" {
		b.WriteString(" skill " + e.Skill)
	}
	if e.Filter != "" {
		b.WriteString(" where " + e.Filter)
	}
	if !e.Node.IsZero() {
		b.WriteString(" on " + e.Node.Short())
	}
	b.WriteString(": " + string(e.Code))
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error of the same code with no
// message: a sentinel such as ErrTimeout.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Err == nil && t.Task.IsZero() && t.Code == e.Code
}

// Sentinels, one per code, for errors.Is.
var (
	ErrContractViolation = &Error{Code: CodeContractViolation}
	ErrDependencyMissing = &Error{Code: CodeDependencyMissing}
	ErrResourceExhausted = &Error{Code: CodeResourceExhausted}
	ErrLimitExceeded     = &Error{Code: CodeLimitExceeded}
	ErrTimeout           = &Error{Code: CodeTimeout}
	ErrLateResult        = &Error{Code: CodeLateResult}
	ErrCancelled         = &Error{Code: CodeCancelled}
	ErrLost              = &Error{Code: CodeLost}
	ErrHandlerError      = &Error{Code: CodeHandlerError}
	ErrUnknownSkill      = &Error{Code: CodeUnknownSkill}
	ErrNoWorker          = &Error{Code: CodeNoWorker}
	ErrProvenance        = &Error{Code: CodeProvenance}
	ErrNotFound          = &Error{Code: CodeNotFound}
	ErrPermissionDenied  = &Error{Code: CodePermissionDenied}
)

// Errors of the API that are not about a task.
var (
	// ErrClosed is returned by calls on a closed Worker or Submitter.
	ErrClosed = errors.New("task: closed")
	// ErrInvalidSkill reports a skill declaration Register refuses; the
	// error says why.
	ErrInvalidSkill = errors.New("task: invalid skill")
	// ErrSkillExists is returned by Register for a name already
	// registered.
	ErrSkillExists = errors.New("task: skill already registered")
	// ErrMalformed reports bytes that are not a well-formed task message.
	ErrMalformed = errors.New("task: malformed message")
	// ErrInvalidID reports text that is not a task id.
	ErrInvalidID = errors.New("task: invalid task id")
)

// asError returns err as an *Error: itself if it is one, else an error of
// code with err's text.
func asError(err error, code Code) *Error {
	var te *Error
	if errors.As(err, &te) {
		return te
	}
	return &Error{Code: code, Message: err.Error()}
}

// validCode reports whether c is a code a peer may send: upper case
// letters and underscores, 1 to maxCodeLen bytes. Unknown codes are kept
// (a newer peer may know more), malformed ones are not.
func validCode(c string) bool {
	if len(c) == 0 || len(c) > maxCodeLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		if (c[i] < 'A' || c[i] > 'Z') && c[i] != '_' {
			return false
		}
	}
	return true
}
