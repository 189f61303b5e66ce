package task

import "container/heap"

// jobHeap is a container/heap of jobs that keeps each job's position in
// it (in the field index returns), so a job can be taken out from the
// middle. The worker keeps two: each skill's run queue, ordered by
// runsBefore, and the queued jobs with a deadline, earliest first.
type jobHeap struct {
	jobs  []*job
	less  func(a, b *job) bool
	index func(*job) *int // -1 while the job is not in the heap
}

func newRunQueue() jobHeap {
	return jobHeap{less: runsBefore, index: func(j *job) *int { return &j.qi }}
}

func newDeadlineQueue() jobHeap {
	return jobHeap{
		less:  func(a, b *job) bool { return a.deadline.Before(b.deadline) },
		index: func(j *job) *int { return &j.di },
	}
}

func (h *jobHeap) Len() int           { return len(h.jobs) }
func (h *jobHeap) Less(i, j int) bool { return h.less(h.jobs[i], h.jobs[j]) }

func (h *jobHeap) Swap(i, j int) {
	h.jobs[i], h.jobs[j] = h.jobs[j], h.jobs[i]
	*h.index(h.jobs[i]), *h.index(h.jobs[j]) = i, j
}

func (h *jobHeap) Push(x any) {
	j := x.(*job)
	*h.index(j) = len(h.jobs)
	h.jobs = append(h.jobs, j)
}

func (h *jobHeap) Pop() any {
	n := len(h.jobs) - 1
	j := h.jobs[n]
	h.jobs[n] = nil
	h.jobs = h.jobs[:n]
	*h.index(j) = -1
	return j
}

// head returns the first job, nil when the heap is empty.
func (h *jobHeap) head() *job {
	if len(h.jobs) == 0 {
		return nil
	}
	return h.jobs[0]
}

// remove takes j out of the heap if it is in it.
func (h *jobHeap) remove(j *job) {
	if i := *h.index(j); i >= 0 {
		heap.Remove(h, i)
	}
}

// runsBefore is the scheduling order: priority, deadline, arrival.
func runsBefore(a, b *job) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	if !a.deadline.Equal(b.deadline) {
		switch {
		case a.deadline.IsZero():
			return false
		case b.deadline.IsZero():
			return true
		}
		return a.deadline.Before(b.deadline)
	}
	return a.seq < b.seq
}
