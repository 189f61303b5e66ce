package task_test

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
)

// member makes a node a member of ca's closed mesh, in groups.
func member(t testing.TB, ca *identity.Identity, groups ...string) func(*mesh.Config) {
	return func(c *mesh.Config) {
		c.Identity, _ = identity.Generate()
		cert, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
			NodeKey: c.Identity.PublicKey(), Name: "n", Groups: groups, NotAfter: time.Now().Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Membership.Authorities = []ed25519.PublicKey{ca.PublicKey()}
		c.Membership.Certificate = cert
	}
}

// TestSkillGroups: a skill that requires a group runs the tasks of
// submitters whose certificate names it and refuses the others with
// PERMISSION_DENIED before anything runs; the catalog shows the groups.
func TestSkillGroups(t *testing.T) {
	ca, _ := identity.Generate()
	wn := newNode(t, member(t, ca))
	in, out := newNode(t, member(t, ca, "gpu-users")), newNode(t, member(t, ca, "web"))
	sin, sout := in.submitter(t, task.SubmitterConfig{}), out.submitter(t, task.SubmitterConfig{})
	skill := echo("render")
	skill.Groups = []string{"gpu-users"}
	w := wn.worker(t, task.WorkerConfig{}, skill)
	connect(t, in, wn)
	connect(t, out, wn)

	id, err := sin.Submit(ctxT(t), task.Request{Skill: "render", Node: wn.id(), Params: json.RawMessage(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	if info, err := sin.Wait(ctxT(t), id); err != nil || info.State != task.StateSucceeded {
		t.Fatalf("a submitter in the group: %+v %v", info, err)
	}
	_, err = sout.Submit(ctxT(t), task.Request{Skill: "render", Node: wn.id(), Params: json.RawMessage(`1`)})
	code(t, err, task.CodePermissionDenied)
	if st := w.Stats(); st.Accepted != 1 || st.Refused != 1 {
		t.Fatalf("worker stats %+v", st)
	}
	cat, _ := w.Catalog()
	if len(cat) != 1 || len(cat[0].Groups) != 1 || cat[0].Groups[0] != "gpu-users" {
		t.Fatalf("catalog %+v", cat)
	}
	bad := echo("bad")
	bad.Groups = []string{"Not A Group"}
	if err := task.ValidateSkill(bad); err == nil {
		t.Fatal("an invalid group name was accepted")
	}
}
