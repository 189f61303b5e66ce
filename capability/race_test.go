//go:build race

package capability

// raceEnabled: the race detector is on (it makes signing 20,000
// announcements take minutes).
const raceEnabled = true
