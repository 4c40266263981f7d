package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"lightwhale/tests/vm"
)

// Issue 17: Lightwhale machines form a Docker Swarm. Two guests share a
// private segment (a second NIC, static addresses from their NoCloud
// seeds): the manager inits the swarm from its seed's runcmd, the worker
// joins with the token the test's "automation" reads from the manager.

// One swarm node: its name, its address and MAC on the segment.
type swarmNode struct{ name, addr, mac string }

var (
	swarmManager = swarmNode{"swarm-mgr", "192.168.50.10", "52:54:00:50:00:10"}
	swarmWorker  = swarmNode{"swarm-wkr", "192.168.50.11", "52:54:00:50:00:11"}
)

const (
	swarmImage = "local/bb-swarm"
	// The encrypted overlay's page: it must never cross the segment in
	// clear text.
	secretPage = "lw-secret-page-0f3c"
	// The Swarm secret the service's tasks serve.
	swarmSecret = "lw-swarm-secret-7d1e"
)

// seed is n's NoCloud seed: host name, the static address on the segment
// NIC, and runcmd (may be empty).
func (n swarmNode) seed(t *testing.T, runcmd string) string {
	user := "#cloud-config\nhostname: " + n.name + "\n"
	if runcmd != "" {
		user += "runcmd:\n  - " + runcmd + "\n"
	}
	return seedISO(t, map[string]string{
		"meta-data": "instance-id: " + n.name + "-1\n",
		"user-data": user,
		"network-config": `version: 2
ethernets:
  swarm:
    match: {macaddress: "` + n.mac + `"}
    addresses: [` + n.addr + `/24]
`,
	})
}

func TestSwarm(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	began := time.Now()
	seg := 20000 + int(time.Now().UnixNano()%20000)
	wire := sniffSegment(t, seg, secretPage, swarmWorker.name)

	// The manager is persistent (a disk with the consent header): it must
	// come back from a reboot with its cluster. It inits the swarm itself.
	mcfg := vm.Config{ISO: iso, Name: swarmManager.name,
		Disks:  makeDisks(t, t.TempDir(), diskSpec{diskMiB, magic, vm.Virtio}),
		CDROMs: []string{swarmManager.seed(t, "docker swarm init --advertise-addr "+swarmManager.addr)},
		NICs:   []vm.NIC{{Segment: seg, MAC: swarmManager.mac}}}
	wcfg := vm.Config{ISO: iso, Name: swarmWorker.name,
		CDROMs: []string{swarmWorker.seed(t, "")},
		NICs:   []vm.NIC{{Segment: seg, MAC: swarmWorker.mac}}}
	// Both power on at once: the boots overlap.
	var gs []*guest
	for _, cfg := range []vm.Config{mcfg, wcfg} {
		g, err := powerOn(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	mgr, wkr := gs[0], gs[1]
	for _, g := range gs {
		if err := g.waitUp(bootTimeout); err != nil {
			t.Fatal(err)
		}
		g.waitDocker()
	}
	waitFor(t, mgr, "the manager's swarm (runcmd)", "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'", "active true")

	// No registry: the manager builds the image, every node loads it.
	mgr.run(importBusyboxScript(swarmImage, "swarm"))
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if err := vm.Pipe(ctx, mgr.Machine, "docker save "+swarmImage, wkr.Machine, "docker load -q"); err != nil {
		t.Fatal(err)
	}

	// Bad input first, on the worker, each answered by Docker's own error.
	// A wrong secret is refused by the manager: the node stays standalone.
	token := mgr.run("docker swarm join-token -q worker")
	join := func(token, addr string) string {
		return "docker swarm join --token " + token + " " + addr + ":2377 2>&1"
	}
	state := func() string { return wkr.run("docker info --format '{{.Swarm.LocalNodeState}}'") }
	bad := token[:len(token)-5] + "zzzzz" // the cluster's CA digest, a wrong secret
	if out, err := wkr.try(join(bad, swarmManager.addr)); err == nil || !strings.Contains(out, "A valid join token is necessary to join this cluster") {
		t.Errorf("join with a wrong token: err %v, output %q", err, out)
	}
	wantEqual(t, "swarm state after a wrong token", state(), "inactive")
	// No manager answers: the join gives up waiting after 20 s but goes on
	// trying in the background ("pending"), which `swarm leave` ends. The
	// engine runs containers all along.
	if out, err := wkr.try(join(token, "192.168.50.99")); err == nil || !strings.Contains(out, "Timeout was reached before node joined") {
		t.Errorf("join with an unreachable manager: err %v, output %q", err, out)
	}
	wantEqual(t, "swarm state while no manager answers", state(), "pending")
	wantEqual(t, "a container while the join is pending", wkr.run("docker run --rm "+swarmImage+" echo standalone-ok"), "standalone-ok")
	wkr.run("docker swarm leave --force 2>&1")
	wantEqual(t, "swarm state after leave", state(), "inactive")

	// The join the README shows.
	wkr.run(join(token, swarmManager.addr))
	waitFor(t, mgr, "nodes ready", "docker node ls --format '{{.Hostname}} {{.Status}}' | sort | tr '\\n' ' '", "swarm-mgr Ready swarm-wkr Ready")

	// A global service (a task on every node) publishing port 8080 on the
	// routing mesh; each task serves its node's host name and a secret
	// (kept in the managers' Raft log, handed to the tasks on every node).
	// httpd as PID 1 ignores SIGTERM: a short grace period keeps the
	// manager's reboot from waiting 10 s for it.
	mgr.run("printf " + swarmSecret + " | docker secret create lw-secret -")
	out := mgr.run(`docker service create -d --name web --mode global --publish 8080:80 --secret lw-secret --stop-grace-period 1s --hostname '{{.Node.Hostname}}' ` + swarmImage +
		` sh -c 'echo "$(hostname) $(cat /run/secrets/lw-secret)" > /www/index.html && exec httpd -f -p 80 -h /www' 2>&1`)
	t.Logf("docker service create, offline with a local image:\n%s", out)
	waitFor(t, mgr, "web's tasks", "docker service ls --filter name=web --format '{{.Replicas}}'", "2/2")
	for _, from := range []*guest{mgr, wkr} {
		for _, n := range []swarmNode{swarmManager, swarmWorker} {
			meshAnswers(t, from, n.addr)
		}
	}

	// An encrypted overlay (IPsec ESP between the nodes): a container on
	// the manager fetches a page from one on the worker, by name.
	mgr.run("docker network create -d overlay --opt encrypted --attachable --subnet 10.201.0.0/24 lw-secure")
	wkr.run("docker run -d --name lw-peer --network lw-secure " + swarmImage +
		" sh -c 'echo " + secretPage + " > /www/index.html && exec httpd -f -p 80 -h /www'")
	wantEqual(t, "the worker's page over the encrypted overlay",
		mgr.run("for i in $(seq 20); do docker run --rm --network lw-secure "+swarmImage+" wget -qO- -T 5 http://lw-peer/ && break; sleep 3; done"), secretPage)
	esp, clear := wire.stats()
	t.Logf("segment: %d ESP frames; clear-text markers seen: %v", esp, clear)
	if esp == 0 {
		t.Error("no ESP frame crossed the segment: the encrypted overlay is not encrypted")
	}
	if clear[secretPage] {
		t.Error("the encrypted overlay's page crossed the segment in clear text")
	}
	if !clear[swarmWorker.name] {
		t.Error("the sniffer never saw the routing mesh's clear-text page: it proves nothing")
	}

	for _, g := range []*guest{mgr, wkr} {
		t.Logf("%s: memory in use (MemTotal-MemAvailable) %s MiB", g.cfg.Name,
			g.run("awk '/^MemTotal/ {t = $2} /^MemAvailable/ {a = $2} END {print int((t - a) / 1024)}' /proc/meminfo"))
	}

	// The manager reboots on its persistent disk: the cluster, its
	// service and the mesh on its address are back.
	cluster := mgr.run("docker info --format '{{.Swarm.Cluster.ID}}'")
	mgr.reboot()
	mgr.waitDocker()
	waitFor(t, mgr, "the manager's swarm after reboot", "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.Cluster.ID}}'", "active "+cluster)
	waitFor(t, mgr, "nodes ready after reboot", "docker node ls --format '{{.Hostname}} {{.Status}}' | sort | tr '\\n' ' '", "swarm-mgr Ready swarm-wkr Ready")
	waitFor(t, mgr, "web's tasks after reboot", "docker service ls --filter name=web --format '{{.Replicas}}'", "2/2")
	meshAnswers(t, mgr, swarmManager.addr)
	meshAnswers(t, wkr, swarmManager.addr)
	// dockerd found what Swarm needs in the image: it logs an error and
	// carries on when, at any boot, iptables, IPVS, IPsec or a kernel
	// parameter (the routing mesh's net.ipv4.vs.*, which exist only once
	// ip_vs is loaded) fail it.
	for _, g := range []*guest{mgr, wkr} {
		if errs := g.sudo("grep 'level=error' /var/log/docker.log | grep -iE 'kernel parameter|iptables|ipvs|xfrm|ipsec|vxlan|modprobe' || true"); errs != "" {
			t.Errorf("%s: dockerd failed at something Swarm needs:\n%s", g.cfg.Name, errs)
		}
	}
	t.Logf("swarm test wall time %.0f s", time.Since(began).Seconds())
}

// meshAnswers fetches port 8080 of addr from g until the tasks on both
// nodes have answered: the routing mesh (IPVS) spreads connections over all
// of them, whichever node's address is asked. A node learns the other's
// tasks by gossip, which may lag behind `docker service ls`.
func meshAnswers(t *testing.T, g *guest, addr string) {
	t.Helper()
	start := time.Now()
	seen := map[string]bool{}
	var last string
	for !(seen[swarmManager.name] && seen[swarmWorker.name]) {
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("%s asking %s:8080: answers from %v; want both nodes' tasks with the secret (last bad answer: %s)\n%s",
				g.cfg.Name, addr, seen, last, g.run("docker network inspect --verbose ingress 2>&1"))
		}
		out, err := g.try("wget -qO- -T 5 http://" + addr + ":8080/")
		if f := strings.Fields(out); err == nil && len(f) == 2 && f[1] == swarmSecret {
			seen[f[0]] = true
			continue
		}
		last = fmt.Sprintf("%q (%v)", out, err)
		time.Sleep(2 * time.Second)
	}
	t.Logf("%s asking %s:8080: both nodes' tasks answered within %.0f s", g.cfg.Name, addr, time.Since(start).Seconds())
}

// segmentSniffer watches every frame on a private segment: it counts IPsec
// ESP packets and notes which of its markers crossed in clear text.
type segmentSniffer struct {
	mu      sync.Mutex
	esp     int
	markers map[string]bool
}

func sniffSegment(t *testing.T, port int, markers ...string) *segmentSniffer {
	t.Helper()
	conn, _ := joinSegment(t, port)
	s := &segmentSniffer{markers: map[string]bool{}}
	for _, m := range markers {
		s.markers[m] = false
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			f := buf[:n]
			s.mu.Lock()
			// An IPv4 frame (ethertype 0x0800) of protocol 50.
			if len(f) > 23 && binary.BigEndian.Uint16(f[12:14]) == 0x0800 && f[23] == 50 {
				s.esp++
			}
			for m := range s.markers {
				if bytes.Contains(f, []byte(m)) {
					s.markers[m] = true
				}
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *segmentSniffer) stats() (int, map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for m, v := range s.markers {
		seen[m] = v
	}
	return s.esp, seen
}
