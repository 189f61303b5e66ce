//go:build !(nat && portmap)

package main

// portmapCompiled reports whether this netnode was built with the nat and
// portmap build tags, which compile UDP port mapping into the mesh.
const portmapCompiled = false
