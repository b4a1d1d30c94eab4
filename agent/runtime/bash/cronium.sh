# Cronium runtime helpers for Bash. Loaded through BASH_ENV (or `source` it).
# Everything lives in the per-job folder $CRONIUM_JOB_DIR; no network needed.

_cronium_dir() { printf '%s' "${CRONIUM_JOB_DIR:-/cronium/job}"; }

_cronium_check_key() {
  case "$1" in
    '' | . | .. | *[!A-Za-z0-9_.-]*)
      echo "cronium: invalid variable key '$1' (allowed: A-Z a-z 0-9 _ . -)" >&2
      return 1 ;;
  esac
}

# Prints the job's input (JSON).
cronium_input() { cat "$(_cronium_dir)/input.json"; }

# Prints the event (JSON: id, name, runId, jobId, attempt).
cronium_event() { cat "$(_cronium_dir)/event.json"; }

# Sets the job's output; VALUE is stored as-is (JSON if it parses, else text).
cronium_output() { printf '%s' "$1" > "$(_cronium_dir)/output"; }

# Prints a variable (set in this run, else from the snapshot); returns 1 if unset.
cronium_get_variable() {
  _cronium_check_key "$1" || return 1
  local dir; dir=$(_cronium_dir)
  if [ -f "$dir/variables-set/$1" ]; then cat "$dir/variables-set/$1"
  elif [ -f "$dir/variables/$1" ]; then cat "$dir/variables/$1"
  else return 1
  fi
}

cronium_set_variable() {
  _cronium_check_key "$1" || return 1
  printf '%s' "$2" > "$(_cronium_dir)/variables-set/$1"
}

cronium_set_condition() {
  case "$1" in
    true | false) printf '%s' "$1" > "$(_cronium_dir)/condition" ;;
    *) echo "cronium: condition must be true or false, got '$1'" >&2; return 1 ;;
  esac
}
