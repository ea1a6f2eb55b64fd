"""A commented example rules file (`nodetap rules example`)."""

EXAMPLE = """\
# nodetap edge rules: applied in the agent before anything is written or sent anywhere.
# Check a file with: nodetap rules check FILE [--against CAPTURE.jsonl]
# The agent reloads the file when it changes; a bad file is refused (line and reason
# logged) and the previous rules stay in force.

# Built-in drop rules: probes and scrapes (/healthz, /livez, /readyz, kube-probe/...,
# /metrics, Prometheus/...). Default: both. [] turns them off.
builtin: [health-checks, metrics-scrapes]

# Drop rules: the first that matches drops the RRPair. All conditions of a rule must hold.
drop:
  - name: no-admin
    host: "admin.*"          # Host header, port removed; glob, case-insensitive
    path: "^/internal/"      # regex, searched in the path (query removed)
  - name: no-kube-system
    namespace: kube-system   # glob(s) on the pod's namespace
  # other conditions: port: [8080], method: [DELETE], pod: "batch-*",
  #                   workload: "Deployment/web", labels: {app: "debug-*"}

# Sampling: the first matching rule keeps `rate` of its RRPairs (decided by RRPair id, so
# `nodetap rules check` predicts exactly what the agent keeps).
sample:
  - name: web-10-percent
    workload: "Deployment/web"
    rate: 0.1

# Redaction (DLP): each secret becomes a same-length token from HMAC-SHA256(key, secret):
# lengths stay right for replay, equal secrets give equal tokens for diffing. The key is the
# installation's secret (nodetap capture --redaction-key FILE; by default a 0600 file created
# on first use), never written here: whoever reads this file could confirm guesses with it.
# Patterns run in linear time (RE2): no lookaround, no backreferences.
redact:
  headers: [X-Api-Key]       # in addition to Authorization, Cookie, Set-Cookie,
  default_headers: true      #   Proxy-Authorization
  json_fields: [password, card.number, "*.ssn"]   # key paths, matched at any depth
  patterns: [credit-card, email, bearer, jwt]     # credit cards pass a Luhn check first
  custom:
    - name: order-id
      regex: "ORD-[0-9]{6}"
"""
