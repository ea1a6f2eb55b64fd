"""Node network setup owned by nodetap: conntrack (monitor, pre-flight, stale entries), tagged
NOTRACK rule sets on the nft or legacy iptables back end, status/clean of everything nodetap
leaves behind, and a network-namespace lab for tests. Depends on nothing else of nodetap's but
``nodetap.errors``.
"""
