#!/usr/bin/env bash
# A single-node Kubernetes v1.37.2 cluster on loopback, for the tests and for trying the kubernetes engine on one
# machine (root, Linux, cgroup v1 or v2). Real pods: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd (its own config, root, state and socket: the machine's own containerd, if any, is not
# touched) and a kubelet, all started from DIR and stopped by their pids.
#   scripts/k8s-dev.sh up DIR     start it; writes DIR/kubeconfig (an admin token) and DIR/env; idempotent
#   scripts/k8s-dev.sh down DIR   stop everything it started, unmount, and remove DIR's cluster state
#   scripts/k8s-dev.sh status DIR which of its processes run
# Binaries: scripts/engines.sh kubernetes (built once, ~8 min cold). Images: scripts/image.sh (the runtime image
# needs bin/slipway: make build, or SLIPWAY_BIN), imported with ctr. SLIPWAY_K8S_SKIP_RUNTIME_IMAGE=1 imports the
# pause image only. SLIPWAY_K8S_CONTAINERD_ROOT=PATH keeps containerd's images there between clusters (importing
# the 1 GB runtime image takes minutes); a root in use by another running cluster is not shared.
# The flags below are the ones ../docs/engines.md explains; each non-obvious one says why.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:-}" dir="${2:-}"
[[ -n $cmd && -n $dir ]] || { echo "usage: scripts/k8s-dev.sh up|down|status DIR" >&2; exit 2; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
components=(kubelet kube-scheduler kube-controller-manager kube-apiserver containerd etcd) # stop order

die() { echo "k8s-dev: $*" >&2; exit 1; }
pid_of() { cat "$dir/pids/$1" 2>/dev/null || true; }
alive() { local p; p="$(pid_of "$1")"; [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }

stop_pid() { # stop_pid PID: TERM, then KILL after 10 s
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}

down() {
  # The pods' containers first (each has a containerd shim of its own, which outlives containerd): through the
  # CRI the kubelet would use, then the shims by the pid files containerd wrote for them.
  if alive kubelet; then stop_pid "$(pid_of kubelet)"; fi
  if alive containerd; then
    local ctr=(ctr --address "$dir/run/containerd.sock" -n k8s.io) t
    for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
    for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks rm -f "$t" >/dev/null 2>&1 || true; done
  fi
  local c f
  # A kept containerd root (SLIPWAY_K8S_CONTAINERD_ROOT) keeps its images, not this cluster's pods.
  if alive containerd && [[ -f $dir/run/shared-root ]]; then
    local ctr=(ctr --address "$dir/run/containerd.sock" -n k8s.io) t
    for t in $("${ctr[@]}" containers ls -q 2>/dev/null); do "${ctr[@]}" containers rm "$t" >/dev/null 2>&1 || true; done
    rm -f "$(cat "$dir/run/shared-root")/.owner"
  fi
  for c in "${components[@]}"; do
    if alive "$c"; then stop_pid "$(pid_of "$c")"; fi
    rm -f "$dir/pids/$c"
  done
  if [[ -d $dir/containerd/state ]]; then
    while IFS= read -r f; do stop_pid "$(cat "$f")"; done < <(find "$dir/containerd/state" -name shim.pid 2>/dev/null)
  fi
  # Mounts under DIR (sandbox shm, overlay rootfs, kubelet volumes), deepest first.
  local m
  while IFS= read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "k8s-dev: could not unmount $m" >&2
  done < <(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  rm -rf "$dir/etcd" "$dir/containerd" "$dir/kubelet" "$dir/pod-logs" "$dir/run" "$dir/pids"
}

free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

start() { # start NAME CMD...: in its own session, output to DIR/logs/NAME.log, pid to DIR/pids/NAME
  local name=$1
  shift
  setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name"
}

wait_for() { # wait_for WHAT SECONDS NAME COMMAND...: until COMMAND succeeds, or NAME died, or time is up
  local what=$1 secs=$2 name=$3 i
  shift 3
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$name" || die "$name exited while waiting for $what; last lines of $dir/logs/$name.log:
$(tail -n 15 "$dir/logs/$name.log")"
    sleep 0.2
  done
  die "$what not ready after ${secs}s; last lines of $dir/logs/$name.log:
$(tail -n 15 "$dir/logs/$name.log")"
}

api() { # api PATH: GET from the API server as admin
  curl -sf --cacert "$dir/pki/apiserver.crt" -H "Authorization: Bearer $(cat "$dir/pki/admin.token")" "$(cat "$dir/run/api-url")$1"
}

node_ready() {
  api /api/v1/nodes/localhost | /usr/bin/python3 -c '
import json, sys
n = json.load(sys.stdin)
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]) else 1)'
}

up() {
  [[ $(id -u) -eq 0 ]] || die "the kubelet and containerd need root: run as root (sudo)"
  for c in "${components[@]}"; do
    if alive "$c"; then
      if [[ -f $dir/kubeconfig ]] && alive kubelet && alive kube-apiserver && node_ready; then
        echo "k8s-dev: already up: $dir/kubeconfig" >&2
        echo "$dir/kubeconfig"
        return 0
      fi
      echo "k8s-dev: a partial cluster runs in $dir: stopping it first" >&2
      down
      break
    fi
  done
  local t0=$SECONDS bins
  bins="$("$here/engines.sh" kubernetes)/bin"
  for b in containerd ctr runc containerd-shim-runc-v2 openssl curl; do
    command -v "$b" >/dev/null || die "$b is missing: run scripts/install-deps.sh"
  done
  [[ -x /usr/lib/cni/loopback ]] || die "/usr/lib/cni/loopback is missing: run scripts/install-deps.sh (containernetworking-plugins)"
  mkdir -p "$dir"/{pids,logs,pki,run,etcd,cni,containerd,kubelet,pod-logs,images}
  local ports etcd_port etcd_peer api_port kubelet_port kubelet_healthz kcm_port sched_port
  read -r etcd_port etcd_peer api_port kubelet_port kubelet_healthz kcm_port sched_port <<<"$(free_ports 7)"
  local api_url="https://127.0.0.1:$api_port"
  echo "$api_url" >"$dir/run/api-url"

  # Credentials: an admin token (every component uses it: one node, one operator) and the service-account key.
  [[ -f $dir/pki/admin.token ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/pki/admin.token"
  echo "$(cat "$dir/pki/admin.token"),admin,1,\"system:masters\"" >"$dir/pki/tokens.csv"
  [[ -f $dir/pki/sa.key ]] || openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null

  # Images first (containerd must know the pause image before the first pod sandbox).
  local pause_tar runtime_tar=""
  pause_tar="$("$here/image.sh" pause "$dir/images/pause.tar")"
  if [[ -z ${SLIPWAY_K8S_SKIP_RUNTIME_IMAGE:-} ]]; then
    runtime_tar="$("$here/image.sh" runtime "${SLIPWAY_K8S_IMAGE_CACHE:-$dir/images}/slipway.tar")"
  fi

  start etcd "$bins/etcd" --name slipway-dev --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "slipway-dev=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level warn
  wait_for etcd 60 etcd curl -sf "http://127.0.0.1:$etcd_port/health"

  # --kubelet-preferred-address-types=Hostname: logs and exec reach the kubelet on "localhost" (the node's
  # name), where it listens; --endpoint-reconciler-type=none: no "kubernetes" service endpoint on loopback.
  start kube-apiserver "$bins/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$dir/pki" \
    --token-auth-file "$dir/pki/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range 10.96.0.0/24 \
    --kubelet-preferred-address-types Hostname --endpoint-reconciler-type none --allow-privileged
  wait_for "the API server's certificate" 60 kube-apiserver test -s "$dir/pki/apiserver.crt"
  wait_for "the API server" 240 kube-apiserver api /readyz

  cat >"$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: slipway-dev
  cluster:
    server: $api_url
    certificate-authority: $dir/pki/apiserver.crt
users:
- name: admin
  user:
    token: $(cat "$dir/pki/admin.token")
contexts:
- name: slipway-dev
  context: {cluster: slipway-dev, user: admin, namespace: default}
current-context: slipway-dev
KC

  start kube-controller-manager "$bins/kube-controller-manager" --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --controllers '*,-node-ipam-controller' \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/apiserver.crt"
  start kube-scheduler "$bins/kube-scheduler" --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false

  # containerd: restrict_oom_score_adj because this machine refuses oom_score_adj -998 (every sandbox failed
  # with "can't get final child's PID from pipe: EOF" without it); no pod network: the CNI config is loopback
  # only and the pods that talk use hostNetwork.
  cat >"$dir/cni/10-loopback.conflist" <<'CNI'
{"cniVersion": "0.4.0", "name": "slipway-dev", "plugins": [{"type": "loopback"}]}
CNI
  local root="$dir/containerd/root" shared="${SLIPWAY_K8S_CONTAINERD_ROOT:-}"
  if [[ -n $shared ]]; then
    mkdir -p "$shared"
    local owner
    owner="$(cat "$shared/.owner" 2>/dev/null || true)"
    if [[ -z $owner ]] || ! kill -0 "$owner" 2>/dev/null; then
      root="$shared"
      echo "$shared" >"$dir/run/shared-root"
    else
      echo "k8s-dev: containerd root $shared is in use by pid $owner: this cluster keeps its images in $dir" >&2
    fi
  fi
  cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$dir/run/containerd.sock"
[ttrpc]
  address = "$dir/run/containerd.ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/slipway-pause:1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
TOML
  start containerd containerd --config "$dir/containerd/config.toml"
  [[ -f $dir/run/shared-root ]] && pid_of containerd >"$root/.owner"
  local ctr=(ctr --address "$dir/run/containerd.sock" -n k8s.io) tar
  wait_for containerd 60 containerd "${ctr[@]}" version
  for tar in "$pause_tar" $runtime_tar; do
    # The tar's inputs (image.sh keeps them next to it) say whether this root already has exactly this image.
    local stamp="$root/.imported-$(sha256sum "$tar.inputs" | cut -c1-16)"
    [[ -f $stamp ]] && continue
    "${ctr[@]}" images import --snapshotter overlayfs "$tar" >/dev/null || die "importing $tar into containerd failed"
    touch "$stamp"
  done

  # kubelet: cgroupfs and no QoS cgroups or allocatable enforcement (works on cgroup v1, which this kind of
  # machine has: failCgroupV1 false); no eviction or image garbage collection, which would evict pods and
  # delete the imported images on a full shared disk; the node is "localhost" (--node-ip 127.0.0.1 is refused).
  cat >"$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$dir/run/containerd.sock
imageServiceEndpoint: unix://$dir/run/containerd.sock
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
localStorageCapacityIsolation: false
resolvConf: ""
podLogsDir: $dir/pod-logs
volumePluginDir: $dir/kubelet/volume-plugins
evictionHard: {memory.available: "1Mi", nodefs.available: "1Ki", imagefs.available: "1Ki"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
  start kubelet "$bins/kubelet" --config "$dir/kubelet/config.yaml" --kubeconfig "$dir/kubeconfig" \
    --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" --hostname-override localhost
  wait_for "the node" 240 kubelet node_ready
  wait_for "the default service account" 120 kube-controller-manager api /api/v1/namespaces/default/serviceaccounts/default

  cat >"$dir/env" <<ENV
KUBECONFIG=$dir/kubeconfig
CONTAINERD_ADDRESS=$dir/run/containerd.sock
ENV
  echo "k8s-dev: up in $((SECONDS - t0)) s: KUBECONFIG=$dir/kubeconfig (logs in $dir/logs)" >&2
  echo "$dir/kubeconfig"
}

status() {
  local c
  for c in "${components[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
  done
}

case "$cmd" in
up) up ;;
down) down ;;
status) status ;;
*) die "unknown command '$cmd' (up, down or status)" ;;
esac
