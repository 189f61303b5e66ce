package dialaddr_test

import (
	"context"
	"fmt"

	"github.com/netmesh/netmesh/dialaddr"
)

// Parse a dial string from a config file, then resolve it before
// connecting (mesh.Connect takes the address and a mesh.Pin of a.Key and
// a.ID).
func ExampleParse() {
	a, err := dialaddr.Parse("192.0.2.10:7946,key=9fef98de5da4178916330a2aa1c638cb0ee4ca464760c3a4c7495146d3315ffd")
	if err != nil {
		panic(err)
	}
	addrs, err := a.Resolve(context.Background(), nil) // a DNS name is looked up again on every call
	if err != nil {
		panic(err)
	}
	fmt.Println(addrs[0])
	fmt.Println(a.NodeID())
	fmt.Println(a)
	// Output:
	// 192.0.2.10:7946
	// cajvpajajyttukj7y4mrbebzsu
	// 192.0.2.10:7946,key=9fef98de5da4178916330a2aa1c638cb0ee4ca464760c3a4c7495146d3315ffd
}
