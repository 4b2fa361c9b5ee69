@@ file
# Written by connc for pipeline @{pipeline}. Load it with: . @{bundle}/env
# Paths only: the secrets stay in the bundle's files (0600). Trust settings such as
# GIT_SSL_CAINFO, SSL_CERT_FILE or REQUESTS_CA_BUNDLE are left as the environment has them.
@{git_include}
@{exports}
@@ git-include
# Adds to the user's own git config (GIT_CONFIG_COUNT) instead of replacing it.
__connc_n=${GIT_CONFIG_COUNT:-0}
export "GIT_CONFIG_KEY_${__connc_n}=include.path"
export "GIT_CONFIG_VALUE_${__connc_n}="@{path}
export GIT_CONFIG_COUNT=$((__connc_n + 1))
unset __connc_n
@@ export
export @{name}=@{value}
