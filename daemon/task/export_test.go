package task

// SetBeforeDelivery makes s call f as each delivery arrives, before it
// looks at it: tests delay results with it, as a slow network would.
// Call it before any task is submitted.
func SetBeforeDelivery(s *Submitter, f func()) { s.beforeDelivery = f }
