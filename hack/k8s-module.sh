# Sourced by hack/build-k8s.sh and hack/build-node.sh.
#
# k8s_module NAME VERSION [REQUIRE...] makes the current folder a throwaway Go
# module NAME that can build commands of k8s.io/kubernetes@VERSION (once:
# nothing happens if go.mod exists). k8s.io/kubernetes cannot be required
# directly: its go.mod points every k8s.io/<staging> module at a local
# folder, so each is replaced with the published v0.X.Y. REQUIRE are more
# module@version requirements.
k8s_module() {
  local name="$1" version="$2"
  shift 2
  [ -f go.mod ] && return 0
  go mod init "$name" >/dev/null 2>&1
  local staging="${version/#v1./v0.}" modfile m
  modfile="$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  local edits=()
  for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile"); do
    edits+=("-replace=${m}=${m}@${staging}")
  done
  edits+=("-require=k8s.io/kubernetes@${version}")
  for m in "$@"; do
    edits+=("-require=$m")
  done
  go mod edit "${edits[@]}"
  go mod tidy >&2
}
