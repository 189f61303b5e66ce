//go:build nat

package main

// natCompiled reports whether this netnode was built with the nat build
// tag, which compiles NAT traversal into the mesh. Without it the nat
// config section is refused.
const natCompiled = true
