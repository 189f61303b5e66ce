package task

import (
	"time"

	"github.com/netmesh/netmesh/capability"
)

// Names on the mesh.
const (
	// WorkerService is the rpc service a Worker serves: submit, cancel,
	// sync, catalog and commands.
	WorkerService = "task.worker"
	// ResultsService is the streaming rpc service a Worker serves: a
	// submitter opens it to receive its tasks' events and results.
	ResultsService = "task.results"
	// SkillTagPrefix prefixes a skill's name to make the capability tag
	// every worker serving it announces; HotTagPrefix makes the tag of a
	// skill ready now.
	SkillTagPrefix = "skill:"
	HotTagPrefix   = "hot:"
	// LoadPrefix is the metadata prefix of a worker's load:
	// task.running, task.queued and task.limit (see package placement).
	LoadPrefix = "task"
	// CatalogKey is the metadata key of the hash of a worker's catalog.
	CatalogKey = "task.catalog"
	// capabilityLayer is the part of a node's capability set the worker
	// owns (see mesh.AnnounceLayerCapabilities): the application's
	// announcements leave it alone.
	capabilityLayer = "task"
	// MaxSkillName is the longest skill name: "skill:<name>" must fit a
	// capability tag.
	MaxSkillName = capability.MaxTagLen - len(SkillTagPrefix)
	// MaxChainLinks bounds a forwarding chain: one origin and seven
	// forwarders is more than any controller tree needs, and bounds the
	// signatures a worker verifies per task (each about 50 µs).
	MaxChainLinks = 8
)

// Defaults of WorkerConfig.
const (
	// DefaultMaxRunning is WorkerConfig.MaxRunning when zero: tasks
	// running at once across all skills.
	DefaultMaxRunning = 64
	// DefaultQueueSize is WorkerConfig.QueueSize when zero: tasks waiting
	// to run. Beyond it a submit is refused with RESOURCE_EXHAUSTED, so
	// the submitter tries another node instead of waiting here.
	DefaultQueueSize = 1024
	// DefaultMaxPerSubmitter is WorkerConfig.MaxPerSubmitter when zero:
	// tasks one submitter may hold at the worker, queued, running or
	// finished and not yet acknowledged. Twice the queue, so one
	// controller can fill the queue while its earlier results are in
	// flight, yet a node cannot hold more than that.
	DefaultMaxPerSubmitter = 2 * DefaultQueueSize
	// DefaultMaxParamsSize is WorkerConfig.MaxParamsSize when zero, and
	// DefaultMaxOutputSize MaxOutputSize: 256 KiB of JSON each. Bulk data
	// belongs in a stream; a batch of requests must fit an rpc request
	// (1 MiB by default).
	DefaultMaxParamsSize = 256 << 10
	DefaultMaxOutputSize = 256 << 10
	// DefaultMaxEventSize is WorkerConfig.MaxEventSize when zero: one
	// progress event's data.
	DefaultMaxEventSize = 16 << 10
	// DefaultMaxPendingEvents is WorkerConfig.MaxPendingEvents when zero:
	// events of one task emitted and not yet delivered. Beyond it Emit
	// fails with RESOURCE_EXHAUSTED: a handler emitting faster than the
	// submitter takes them learns it instead of growing the worker.
	DefaultMaxPendingEvents = 256
	// DefaultMaxUnacked is WorkerConfig.MaxUnacked when zero: bytes of
	// results (and pending events) one submitter has not acknowledged.
	// At the bound the worker refuses the submitter's new tasks with
	// RESOURCE_EXHAUSTED.
	DefaultMaxUnacked = 64 << 20
	// DefaultResultRetention is WorkerConfig.ResultRetention when zero:
	// how long a finished result waits for its submitter to acknowledge
	// it, so a submitter that restarts within the hour still gets it.
	DefaultResultRetention = time.Hour
	// DefaultLoadInterval is WorkerConfig.LoadInterval when zero: how
	// often the worker's load is put into its capability set if it
	// changed (the capability engine rate-limits the broadcasts further).
	DefaultLoadInterval = time.Second
)

// Defaults of SubmitterConfig.
const (
	// DefaultRetention is SubmitterConfig.Retention when zero: how long a
	// finished task's record is kept.
	DefaultRetention = 24 * time.Hour
	// DefaultMaxRecords is SubmitterConfig.MaxRecords when zero. At the
	// bound the oldest finished records go first; if every record is
	// unfinished, Submit fails with LIMIT_EXCEEDED.
	DefaultMaxRecords = 100_000
	// DefaultMaxEvents is SubmitterConfig.MaxEvents when zero: events kept
	// per task for Events; older ones are dropped and counted.
	DefaultMaxEvents = 1024
	// DefaultMaxAttempts is SubmitterConfig.MaxAttempts when zero: the
	// placements of an idempotent task, the first included, when workers
	// are lost.
	DefaultMaxAttempts = 3
	// DefaultMaxCandidates is SubmitterConfig.MaxCandidates when zero:
	// nodes one Submit tries when they refuse.
	DefaultMaxCandidates = 8
	// DefaultSyncInterval is SubmitterConfig.SyncInterval when zero: how
	// often the submitter asks each worker holding its unfinished tasks
	// what became of them. It bounds how long a task on a worker that
	// restarted stays unnoticed.
	DefaultSyncInterval = 10 * time.Second
	// DefaultCallTimeout is SubmitterConfig.CallTimeout and
	// WorkerConfig.CallTimeout when zero: one rpc call of a batch.
	DefaultCallTimeout = 10 * time.Second
)

// Bounds of the wire format and internal timings.
const (
	// maxBatchItems bounds the items of one submit or delivery call.
	maxBatchItems = 256
	// maxBatchBytes bounds the encoded items of one call (one item always
	// goes, whatever its size): half the rpc server's default request
	// limit.
	maxBatchBytes = 512 << 10
	// maxWireBytes bounds one byte string in a message: the largest rpc
	// message a client accepts.
	maxWireBytes = 4 << 20
	// maxSyncIDs bounds the ids of one sync call.
	maxSyncIDs = 4096
	// maxCodeLen, maxLabel and maxMessage bound an error code, a name
	// (status, event, command, version) and a message.
	maxCodeLen = 32
	maxLabel   = 64
	maxMessage = 1024
	// maxEventNames bounds the events one skill declares.
	maxEventNames = 64
	// maxTimeout bounds a task's deadline: a year.
	maxTimeout = 365 * 24 * time.Hour
	// maxPipeCalls bounds the submit calls in flight to one worker. Two
	// keep the link busy while one reply is processed; batches grow
	// beyond that instead of calls.
	maxPipeCalls = 2
	// inlineWait is how long a worker holds the reply to a submit the
	// submitter waits on (Submitter.Run) for the task's result: a task
	// done by then is answered in the reply, saving the results stream a
	// message; a longer one is answered "running" and its result goes on
	// the stream. Only a batch of one task waits: a busy pipe batches.
	inlineWait = 2 * time.Millisecond
	// startNotice is how long a task runs before the worker tells its
	// submitter: a task shorter than that costs no message for it.
	startNotice = 20 * time.Millisecond
	// streamBackoffMin and streamBackoffMax bound the wait before a
	// submitter opens a results stream again after one failed.
	streamBackoffMin = 50 * time.Millisecond
	streamBackoffMax = 5 * time.Second
	// streamIdle ends a results stream on which nothing was sent for that
	// long (the submitter opens a new one when it submits again), and
	// receiverLinger is how long a submitter keeps a stream open after its
	// last unfinished task at the worker ended.
	streamIdle     = 5 * time.Minute
	receiverLinger = 30 * time.Second
	// ackDelay is how long a submitter holds acknowledgements for a
	// worker, waiting for a submit to carry them, before it sends them in
	// a call of their own; maxAcks bounds those it holds per worker (the
	// worker sends results again that were not acknowledged).
	ackDelay = 10 * time.Millisecond
	maxAcks  = 1 << 16
	// maxAckFailures is how many ack calls in a row may fail before the
	// submitter drops a worker's acknowledgements (about 10 s of back-off).
	maxAckFailures = 10
	// deadlineGrace is how long after a task's deadline the submitter
	// waits for the worker's TIMEOUT before it records one itself.
	deadlineGrace = 2 * time.Second
	// tombstones bounds the ids of acknowledged tasks a worker remembers,
	// so a late duplicate of a finished task is not run again; and
	// tombstoneAge is how long it remembers one.
	tombstones   = 16384
	tombstoneAge = 10 * time.Minute
	// maxRedispatch bounds the re-placements of lost tasks running at once.
	maxRedispatch = 16
	// sweepInterval is how often the submitter expires records and checks
	// deadlines.
	sweepInterval = time.Second
)
