"""Node network setup owned by nodetap: conntrack (monitor, pre-flight, stale entries), tagged
NOTRACK rule sets on the nft or legacy iptables back end, tc BPF filters, status/clean of
everything nodetap leaves behind, and named network namespaces. Built on pyroute2 (netlink),
the nftables JSON API and python-iptables; depends on nothing else of nodetap's but
``nodetap.errors``.
"""
