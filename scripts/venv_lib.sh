# Shared by the scripts that build a test venv under $OPTCLI_TEST_CACHE (ort_gpu_venv.sh, llm_venv.sh).
# Expects ROOT (this checkout), PY (the venv's python), PIP (its pip command, an array) and STAMP.
# The venv's optcli is this checkout (one cache may serve several checkouts).
OURS_CHECK='
import pathlib, sys
import optcli
sys.exit(pathlib.Path(optcli.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]).resolve())
'
# From / so that a checkout in the current folder is not what gets imported.
ours() { (cd / && "$PY" -c "$OURS_CHECK" "$ROOT") >/dev/null 2>&1; }

install() {
  local log
  log="$(mktemp)"
  if ! "${PIP[@]}" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    if grep -qiE "could not find a version|connection|network|name resolution|timed out|no matching dist" \
      "$log"; then
      rm -f "$STAMP" "$log"
      echo "package index unreachable while installing: $*" >&2
      exit 3
    fi
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}
