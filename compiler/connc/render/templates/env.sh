@@ file
# Written by connc for pipeline @{pipeline}. Load it with: . @{bundle}/env
# Paths only: the secrets stay in the bundle's files (0600). Trust settings such as
# GIT_SSL_CAINFO, SSL_CERT_FILE or REQUESTS_CA_BUNDLE are left as the environment has them.
@{git_include}
@{exports}
@@ git-include
# Adds to the user's own git config (GIT_CONFIG_COUNT) instead of replacing it. The inherited
# count is text from the environment, so it is only pattern-matched, never evaluated: bash's
# $((...)) would run the $(...) inside a[$(...)] and read 010 as octal 8, where git reads 10.
# Leading zeros go, then ASCII digits only, at most 9; anything else starts at entry 0.
__connc_n=${GIT_CONFIG_COUNT:-0}
__connc_z=${__connc_n%%[!0]*}
__connc_n=${__connc_n#"$__connc_z"}
case $__connc_n in
'') __connc_n=0 ;;
*[!0123456789]*|??????????*)
	printf '%s\n' "connc: warning: GIT_CONFIG_COUNT is not a decimal number of at most 9 digits; the bundle's git settings start at entry 0 and the inherited entries are not used" >&2
	__connc_n=0 ;;
esac
export "GIT_CONFIG_KEY_${__connc_n}=include.path"
export "GIT_CONFIG_VALUE_${__connc_n}="@{path}
export GIT_CONFIG_COUNT=$((__connc_n + 1))
unset __connc_n __connc_z
@@ export
export @{name}=@{value}
