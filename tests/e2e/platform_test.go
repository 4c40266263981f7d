package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lightwhale/tests/vm"
)

// The platform checks (issue 11) run on the shared guest: each uses images,
// projects and files of its own name and removes them.

// platformImage is the busybox image these checks build from (no registry).
const platformImage = "local/bb-platform"

var (
	platformOnce sync.Once
	platformErr  error
)

// platformGuest is the shared guest with platformImage imported once.
func platformGuest(t *testing.T) *guest {
	g := sharedGuest(t)
	platformOnce.Do(func() { _, platformErr = g.try(importBusyboxScript(platformImage, "platform")) })
	if platformErr != nil {
		t.Fatalf("importing %s: %v", platformImage, platformErr)
	}
	return g
}

// writeFile writes content to path in the guest as op.
func (g *guest) writeFile(path, content string) {
	g.t.Helper()
	g.run("printf %s " + vm.ShellQuote(content) + " > " + vm.ShellQuote(path))
}

// `lightwhale version` lists what ships, and each program of the Docker
// stack (built from source, dockerstack/build.sh) reports that version: a
// current API (at least 1.45, Docker 26) on Debian 13.
func TestPlatformVersions(t *testing.T) {
	t.Parallel()
	g := sharedGuest(t)
	lines := map[string]string{}
	for _, l := range strings.Split(g.run("lightwhale version"), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			lines[f[0]] = f[1]
		}
	}
	for _, k := range []string{"lightwhale", "debian", "kernel", "docker", "docker-cli", "containerd", "runc", "crun", "docker-buildx", "docker-compose"} {
		if lines[k] == "" {
			t.Errorf("lightwhale version names no %s: %v", k, lines)
		}
	}
	wantMatch(t, "debian", lines["debian"], `^13\.`)
	wantMatch(t, "kernel", lines["kernel"], `^6\.12\.`)
	api := g.run("docker version --format '{{.Server.APIVersion}}'")
	if v, err := strconv.ParseFloat(api, 64); err != nil || v < 1.45 {
		t.Errorf("engine API %q; want at least 1.45", api)
	}
	wantEqual(t, "engine version", g.run("docker version --format '{{.Server.Version}}'"), lines["docker"])
	wantEqual(t, "CLI version", g.run("docker version --format '{{.Client.Version}}'"), lines["docker-cli"])
	wantEqual(t, "Compose version", g.run("docker compose version --short"), lines["docker-compose"])
	wantMatch(t, "buildx version", g.run("docker buildx version"), `^github\.com/docker/buildx v`+regexp.QuoteMeta(lines["docker-buildx"])+` `)
	wantMatch(t, "containerd version", g.run("containerd --version"), ` v?`+regexp.QuoteMeta(lines["containerd"])+` `)
	wantMatch(t, "runc version", g.sudo("runc --version"), `^runc version `+regexp.QuoteMeta(lines["runc"])+`\n`)
	g.wantMotd("the motd lists the shipped versions", `docker `+regexp.QuoteMeta(lines["docker"])+`\b`)
}

// AppArmor is on and Docker confines containers with its default profile:
// with Docker's read-only /proc paths lifted, the profile alone still denies
// a write to /proc/sysrq-trigger, which an unconfined container may do
// ("h" only prints the SysRq help to the kernel log).
func TestAppArmor(t *testing.T) {
	t.Parallel()
	g := platformGuest(t)
	wantMatch(t, "docker info security options", g.run("docker info --format '{{json .SecurityOptions}}'"), `name=apparmor`)
	wantEqual(t, "container's AppArmor label",
		g.run("docker run --rm "+platformImage+" cat /proc/self/attr/current"), "docker-default (enforce)")
	sysrq := "sh -c 'echo h > /proc/sysrq-trigger && echo written'"
	out, err := g.try("docker run --rm --security-opt systempaths=unconfined " + platformImage + " " + sysrq)
	if err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("confined write to /proc/sysrq-trigger: err %v, output %q; want Permission denied", err, out)
	}
	wantEqual(t, "unconfined write to /proc/sysrq-trigger",
		g.run("docker run --rm --security-opt systempaths=unconfined --security-opt apparmor=unconfined "+platformImage+" "+sysrq), "written")
	// Docker's profile denies with deny rules, which AppArmor does not log;
	// the kernel lists it as loaded and enforcing.
	wantMatch(t, "loaded AppArmor profiles", g.sudo("cat /sys/kernel/security/apparmor/profiles"), `(?m)^docker-default \(enforce\)$`)
}

// Containers run under crun by default (S60dockerd's flags); runc
// stays for `--runtime runc` (and BuildKit's RUN steps, TestBuildx), and
// both confine with Docker's AppArmor profile.
func TestRuntimes(t *testing.T) {
	t.Parallel()
	g := platformGuest(t)
	wantEqual(t, "default runtime", g.run("docker info --format '{{.DefaultRuntime}}'"), "crun")
	wantMatch(t, "crun's path", g.run("docker info --format '{{json .Runtimes.crun}}'"), `"path":"/usr/bin/crun"`)
	name := "lw-runtime"
	g.run("docker run -d --name " + name + " " + platformImage + " sleep 60 >/dev/null")
	defer g.run("docker rm -f " + name + " >/dev/null")
	wantEqual(t, "a default container's runtime", g.run("docker inspect --format '{{.HostConfig.Runtime}}' "+name), "crun")
	wantEqual(t, "a runc container's AppArmor label",
		g.run("docker run --rm --runtime runc "+platformImage+" cat /proc/self/attr/current"), "docker-default (enforce)")
}

// Transparent hugepages are off (grub.cfg), so the kernel keeps its own
// free-memory reserve: vm.min_free_kbytes at most sqrt(16 * MemTotal in
// KiB), its default formula, instead of the 44 MiB that khugepaged sets.
func TestNoTransparentHugepages(t *testing.T) {
	t.Parallel()
	g := sharedGuest(t)
	wantMatch(t, "THP mode", g.run("cat /sys/kernel/mm/transparent_hugepage/enabled"), `\[never\]`)
	minFree, err := strconv.Atoi(g.run("cat /proc/sys/vm/min_free_kbytes"))
	if err != nil {
		t.Fatalf("vm.min_free_kbytes: %v", err)
	}
	total, err := strconv.Atoi(g.run("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
	if err != nil {
		t.Fatalf("MemTotal: %v", err)
	}
	if limit := int(math.Sqrt(16 * float64(total))); minFree > limit {
		t.Errorf("vm.min_free_kbytes %d KiB; want the kernel's default, at most %d KiB for MemTotal %d KiB", minFree, limit, total)
	}
}

// The only swap is zram (S62zram): half the RAM, compressed with zstd,
// preferred to dropping program pages (swappiness 180). S62zram runs after
// dockerd has started, at low priority: wait for it (at most a minute).
func TestZramSwap(t *testing.T) {
	t.Parallel()
	g := sharedGuest(t)
	swaps := strings.Split(g.run("i=0; while [ $(wc -l < /proc/swaps) -lt 2 ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done; tail -n +2 /proc/swaps"), "\n")
	f := strings.Fields(swaps[0])
	if len(swaps) != 1 || len(f) < 3 || f[0] != "/dev/zram0" {
		t.Fatalf("/proc/swaps lists %q; want /dev/zram0 alone", swaps)
	}
	size, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatalf("swap size %q: %v", f[2], err)
	}
	total, err := strconv.Atoi(g.run("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
	if err != nil {
		t.Fatalf("MemTotal: %v", err)
	}
	// The swap header takes a page of the device.
	if size > total/2 || size < total/2-8 {
		t.Errorf("zram swap of %d KiB; want half of MemTotal %d KiB", size, total)
	}
	wantMatch(t, "zram compressor", g.run("cat /sys/block/zram0/comp_algorithm"), `\[zstd\]`)
	wantMatch(t, "vm.swappiness", g.run("cat /proc/sys/vm/swappiness"), `^180$`)
}

// docker build is BuildKit (buildx), offline: a two-stage Dockerfile FROM
// an image that exists only in the guest.
func TestBuildx(t *testing.T) {
	t.Parallel()
	g := platformGuest(t)
	dir := "/tmp/lw-buildx"
	g.run("mkdir -p " + dir)
	defer g.try("rm -rf " + dir + "; docker rmi -f local/lw-buildx local/lw-build >/dev/null 2>&1")
	g.writeFile(dir+"/Dockerfile", fmt.Sprintf(`FROM %[1]s AS build
RUN echo built-in-stage-one > /out.txt
FROM %[1]s
COPY --from=build /out.txt /out.txt
CMD ["cat", "/out.txt"]
`, platformImage))
	// BuildKit probes for the platforms it can run when first asked, not
	// at dockerd's start (moby-buildkit-lazy-platforms.patch): 386 is
	// there, which only that probe finds.
	wantMatch(t, "buildx platforms", g.run("docker buildx inspect"), `(?m)^Platforms: +linux/amd64, .*linux/386$`)
	g.run("docker buildx build --progress plain -t local/lw-buildx " + dir + " 2>&1")
	wantEqual(t, "the two-stage image's output", g.run("docker run --rm local/lw-buildx"), "built-in-stage-one")
	// Plain `docker build` is BuildKit too: its steps are #N lines, not the
	// legacy builder's "Step 1/5".
	out := g.run("docker build --progress plain -t local/lw-build " + dir + " 2>&1")
	if strings.Contains(out, "Step 1/") || !strings.Contains(out, "#1 ") {
		t.Fatalf("docker build did not use BuildKit:\n%s", out)
	}
}

// docker compose (v2, the CLI plugin): two services sharing a named volume
// on a network of their own; one reaches the other by name; down removes it
// all.
func TestCompose(t *testing.T) {
	t.Parallel()
	g := platformGuest(t)
	dir := "/tmp/lw-compose"
	g.run("mkdir -p " + dir)
	defer g.try("docker compose -p lwcompose -f " + dir + "/compose.yaml down -v >/dev/null 2>&1; rm -rf " + dir)
	g.writeFile(dir+"/compose.yaml", fmt.Sprintf(`services:
  web:
    image: %[1]s
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    volumes: [data:/www]
    networks: [back]
  writer:
    image: %[1]s
    command: ["sh", "-c", "echo hello-from-compose > /www/index.html && exec sleep 3600"]
    volumes: [data:/www]
    networks: [back]
volumes:
  data: {}
networks:
  back: {}
`, platformImage))
	compose := "docker compose -p lwcompose -f " + dir + "/compose.yaml "
	g.run(compose + "up -d 2>&1")
	wantEqual(t, "running services", g.run(compose+"ps --services --status running | sort | tr '\\n' ' '"), "web writer")
	var body string
	for i := 0; i < 20; i++ { // the writer may not have written yet
		if body, _ = g.try(compose + "exec -T writer wget -qO- http://web/"); body == "hello-from-compose" {
			break
		}
		time.Sleep(time.Second)
	}
	wantEqual(t, "web's page, fetched by the writer by name", body, "hello-from-compose")
	g.run(compose + "down -v 2>&1")
	wantEqual(t, "what down left", g.run("docker ps -aq --filter label=com.docker.compose.project=lwcompose; docker volume ls -q --filter name=lwcompose_; docker network ls -q --filter name=lwcompose_"), "")
}

// The host's own docker CLI drives the guest engine over SSH
// (DOCKER_HOST=ssh://op@host:port), the ecosystem's standard remote path.
func TestDockerOverSSH(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"docker", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed on the host (scripts/deps.sh installs it)", tool)
		}
	}
	g := sharedGuest(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lw-docker-ssh", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	g.run("mkdir -p -m 700 ~/.ssh && printf '%s\\n' " + vm.ShellQuote(strings.TrimSpace(string(pub))) + " >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys")
	defer g.try("sed -i '/ lw-docker-ssh$/d' ~/.ssh/authorized_keys")
	// The docker CLI runs plain `ssh`; this one adds the key and skips the
	// host key check of a throwaway guest.
	wrapper := filepath.Join(dir, "ssh")
	script := fmt.Sprintf("#!/bin/sh\nexec %s -i %s -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \"$@\"\n",
		mustLookPath(t, "ssh"), key)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}} {{.Server.Os}}")
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"),
		fmt.Sprintf("DOCKER_HOST=ssh://op@127.0.0.1:%d", g.SSHPort))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker over ssh: %v: %s", err, out)
	}
	wantEqual(t, "the guest engine over ssh", strings.TrimSpace(string(out)),
		g.run("docker version --format '{{.Server.Version}} {{.Server.Os}}'"))
}

func mustLookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The README's way to add firmware we do not ship works: the example
// Dockerfile builds on the image make iso built, and the result holds the
// firmware beside our files (make iso CUSTOM= packs such an image).
func TestFirmwareByCustomDockerfile(t *testing.T) {
	base := requireImage(t)
	img := "lightwhale-firmware-test:" + strings.TrimPrefix(base, "lightwhale:")
	defer exec.Command("docker", "rmi", "-f", img).Run()
	build := exec.Command("docker", "build", "--network", "host", "-q", "--build-arg", "LIGHTWHALE="+base, "-t", img, "../../examples/firmware")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build examples/firmware: %v\n%s", err, out)
	}
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", img,
		"-c", "ls /usr/lib/firmware/bnx2 && ls /usr/lib/firmware | grep -c '^iwlwifi-' && test -x /usr/bin/lightwhale").CombinedOutput()
	if err != nil {
		t.Fatalf("the custom image: %v\n%s", err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "bnx2-") || lines[len(lines)-1] == "0" {
		t.Fatalf("the custom image lacks the added bnx2 firmware or ours:\n%s", out)
	}
}

// rootfs/prune-modules.sh keeps the drivers a server boots on and drops,
// with what only they depend on, those named in its drop list, whether a
// directory or a single module (the single ones were once kept by mistake,
// and with them InfiniBand, Ceph and the SCSI target core).
func TestModuleSelection(t *testing.T) {
	base := requireImage(t)
	kept := []string{"virtio_net", "virtio_blk", "btrfs", "overlay", "br_netfilter", "iwlmvm", "mlx5_core", "md-mod", "nvme"}
	dropped := []string{"floppy", "rbd", "libceph", "nvme-rdma", "nvme-fc", "ib_core", "target_core_mod", "xen-scsiback", "md-cluster", "dlm"}
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", base,
		"-c", "find /usr/lib/modules -name '*.ko' | sed 's|.*/||; s|\\.ko$||'").CombinedOutput()
	if err != nil {
		t.Fatalf("listing the image's modules: %v\n%s", err, out)
	}
	have := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		have[m] = true
	}
	for _, m := range kept {
		if !have[m] {
			t.Errorf("module %s is missing from the image", m)
		}
	}
	for _, m := range dropped {
		if have[m] {
			t.Errorf("module %s is in the image; prune-modules.sh drops it", m)
		}
	}
}

// requireImage returns the root filesystem image make iso built
// (lightwhale:VERSION) on the host's Docker, or skips the test.
func requireImage(t *testing.T) string {
	t.Helper()
	requireISO(t) // the image is the one the ISO was built from
	if err := exec.Command("docker", "version").Run(); err != nil {
		t.Skipf("no Docker daemon answers on the host (scripts/deps.sh starts one): %v", err)
	}
	v, err := os.ReadFile("../../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	base := "lightwhale:" + strings.TrimSpace(string(v))
	if err := exec.Command("docker", "image", "inspect", base).Run(); err != nil {
		t.Skipf("%s is not on the host's Docker (make iso builds it)", base)
	}
	return base
}

// A suite the mirror does not have, or a name that is no suite, stops the
// build before anything is built, with one line naming it.
func TestBuildRefusesUnknownSuite(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (scripts/deps.sh installs it)")
	}
	if err := exec.Command("curl", "-fsS", "-o", "/dev/null", "http://deb.debian.org/debian/dists/trixie/InRelease").Run(); err != nil {
		t.Skipf("the Debian mirror does not answer: %v", err)
	}
	for _, suite := range []string{"no-such-suite", "trixie;echo"} {
		out := filepath.Join(t.TempDir(), "out.iso")
		cmd := exec.Command("../../iso/build.sh", "0.0.0", "/nonexistent-binary", out)
		cmd.Env = append(os.Environ(), "SUITE="+suite)
		msg, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(msg)), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], suite) {
			t.Errorf("SUITE=%q: err %v, output %q; want one line naming it", suite, err, msg)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("SUITE=%q: an ISO was written", suite)
		}
	}
}
