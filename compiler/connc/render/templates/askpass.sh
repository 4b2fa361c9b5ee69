@@ file
#!/bin/sh
# Written by connc for pipeline @{pipeline}. Do not edit; run `connc render` again.
# Two roles in one script:
#   git credential helper (`askpass get`): reads git's request on stdin and answers for the
#     longest matching URL prefix (path-aware);
#   GIT_ASKPASS (`askpass "Username for 'https://host': "`): answers by scheme and host.
set -u
pipeline=@{pipeline}

hint() {  # one line on stderr, never stdout (git reads stdout as the answer); the URL in it
  # comes from git or a remote's name, so control characters are dropped, not shown.
  { printf 'connc: %s' "$1" | tr -d '\000-\037\177'; echo; } >&2
}

answer() {  # $1: the URL asked for; $2: username|password|both
  # Compare URLs as git's config matching does: scheme and host lower-cased, no default port
  # (git sends the host as the remote URL spells it: `Git.Example.com:443`).
  scheme=${1%%://*}; rest=${1#*://}
  authority=${rest%%/*}; path=${rest#"$authority"}
  base=$(printf '%s' "$scheme://$authority" | LC_ALL=C tr '[:upper:]' '[:lower:]')
  case "$base" in
    https://*:443) base=${base%:443} ;;
    http://*:80) base=${base%:80} ;;
  esac
  # A dot segment (`org-a/../org-b`, also percent-encoded) would match org-a's prefix here,
  # while the server, or a proxy in front of it, resolves it to org-b: never answer for one.
  case "$path/" in
    */./*|*/../*|*%2[eE]*)
      hint "refusing to answer for $base$path: its path has . or .. segments"
      exit 1 ;;
  esac
  case "$base$path" in
@{cases}
    *)
      hint "no connection of pipeline $pipeline covers $base$path; git asks for credentials it was not given"
      exit 1 ;;
  esac
}

emit() {  # $1 username, $2 password, $3 what to print
  case "$3" in
    username) printf '%s\n' "$1" ;;
    password) printf '%s\n' "$2" ;;
    *) printf 'username=%s\npassword=%s\n' "$1" "$2" ;;
  esac
}

case "${1:-}" in
  get)
    protocol='' host='' path=''
    while IFS= read -r line; do
      [ -z "$line" ] && break
      case "$line" in
        protocol=*) protocol=${line#protocol=} ;;
        host=*) host=${line#host=} ;;
        path=*) path=${line#path=} ;;
      esac
    done
    if [ -n "$path" ]; then answer "$protocol://$host/${path%/}" both
    else answer "$protocol://$host" both; fi ;;
  store|erase)
    cat >/dev/null; exit 0 ;;
  Username\ for\ *|Password\ for\ *)
    url=${1#*\'}; url=${url%\'*}
    scheme=${url%%://*}; rest=${url#*://}
    # Drop a user@ from the host part only: an @ further on belongs to the path, and cutting
    # there could turn a request for one host into the answer for another.
    authority=${rest%%/*}; path=${rest#"$authority"}
    case "$1" in Username*) what=username ;; *) what=password ;; esac
    answer "$scheme://${authority##*@}$path" "$what" ;;
  *) exit 1 ;;
esac
@@ case
    @{prefix}|@{prefix}/*)
@{body}
@@ refresh
      exec @{python} -I -m connc.render.refresh @{bundle} @{connection} "$2" ;;
@@ expiry
      if [ "$(date +%s)" -ge @{epoch} ]; then
        echo "connc: the token of connection "@{connection}" expired at "@{expires}"; run connc render again" >&2
        exit 1
      fi
@@ emit
      emit @{username} @{password} "$2" ;;
