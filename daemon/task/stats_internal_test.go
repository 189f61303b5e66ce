package task

import "testing"

// A worker may refuse with any code, made up or newer than this version:
// the submitter counts those as Other and keeps one counter per code it
// knows, however many codes it sees.
func TestRefusalCodesStayBounded(t *testing.T) {
	var c codeCounts
	for i := range 1000 {
		c.add(Code("MADE_UP_" + string(rune('A'+i%26)) + string(rune('A'+i/26%26))))
	}
	c.add(CodeTimeout)
	r := c.snapshot()
	if r.Other != 1000 || r.ByCode[CodeTimeout] != 1 || len(r.ByCode) != len(refusalCodes) {
		t.Fatalf("other %d, timeout %d, %d codes; want 1000, 1, %d", r.Other, r.ByCode[CodeTimeout], len(r.ByCode), len(refusalCodes))
	}
}
