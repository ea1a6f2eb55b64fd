// nodetap live packet mode: a socket filter on an AF_PACKET socket bound to one interface.
// Keeps TCP segments (IPv4, and IPv6 behind up to 4 extension headers, optionally behind
// one 802.1Q/802.1ad tag) whose source or destination port is selected in nt_ports, and
// drops everything else in the kernel, so user space sees only the traffic it reassembles.
//
// Built by BCC with -DLINK_HDR_LEN=14 for Ethernet-like devices (Ethernet, veth, loopback)
// or 0 for devices without a link-layer header (tun, wireguard), and -DNT_SKIP_OUTGOING on
// loopback, where every packet reaches the socket twice (sent, then received): the sent
// copy is dropped here. Reads only packet bytes (LD_ABS loads) and __sk_buff fields,
// never kernel structs.
//
// Shared layout (mirrored in agent/packet/live.py):
//   nt_ports:    array u8[65536], index = port; nt_ports[0] != 0 means "every port".
//   nt_counters: per-CPU array u64[NT_COUNTERS]: seen, kept, not_tcp.

#define NT_ETH_P_IP 0x0800
#define NT_ETH_P_IPV6 0x86DD
#define NT_ETH_P_8021Q 0x8100
#define NT_ETH_P_8021AD 0x88A8
#define NT_IPPROTO_TCP 6
#define NT_IPPROTO_HOPOPTS 0
#define NT_IPPROTO_ROUTING 43
#define NT_IPPROTO_FRAGMENT 44
#define NT_IPPROTO_DSTOPTS 60
#define NT_MAX_EXT 4

#define NT_PACKET_OUTGOING 4

#define NT_CTR_SEEN 0
#define NT_CTR_KEPT 1
#define NT_CTR_NOT_TCP 2
#define NT_COUNTERS 3

#ifndef LINK_HDR_LEN
#define LINK_HDR_LEN 14
#endif

BPF_ARRAY(nt_ports, u8, 65536);
BPF_PERCPU_ARRAY(nt_counters, u64, NT_COUNTERS);

static __always_inline void nt_count(int idx) {
    u64 *v = nt_counters.lookup(&idx);
    if (v)
        (*v)++;
}

static __always_inline int nt_port_selected(u32 port) {
    u8 *sel = nt_ports.lookup(&port);
    return sel && *sel;
}

int nodetap_port_filter(struct __sk_buff *skb) {
    u32 nh = LINK_HDR_LEN;
    u32 proto;
    u32 th;

#ifdef NT_SKIP_OUTGOING
    if (skb->pkt_type == NT_PACKET_OUTGOING)
        return 0;
#endif
    nt_count(NT_CTR_SEEN);
#if LINK_HDR_LEN == 14
    proto = load_half(skb, 12);
    if (proto == NT_ETH_P_8021Q || proto == NT_ETH_P_8021AD) {
        proto = load_half(skb, 16);
        nh = 18;
    }
#else
    {
        u32 version = load_byte(skb, 0) >> 4;
        proto = version == 4 ? NT_ETH_P_IP : (version == 6 ? NT_ETH_P_IPV6 : 0);
    }
#endif
    if (proto == NT_ETH_P_IP) {
        if (load_byte(skb, nh + 9) != NT_IPPROTO_TCP)
            goto not_tcp;
        if (load_half(skb, nh + 6) & 0x1FFF)  // a later fragment: no TCP header
            goto not_tcp;
        th = nh + ((load_byte(skb, nh) & 0x0F) << 2);
    } else if (proto == NT_ETH_P_IPV6) {
        u32 next = load_byte(skb, nh + 6);
        th = nh + 40;
        // skip up to NT_MAX_EXT extension headers: hop-by-hop, routing, destination
        // options (length in 8-octet units after the first 8) and fragment (8 octets,
        // only the first fragment carries the TCP header)
#pragma unroll
        for (int i = 0; i < NT_MAX_EXT; i++) {
            if (next == NT_IPPROTO_HOPOPTS || next == NT_IPPROTO_ROUTING ||
                next == NT_IPPROTO_DSTOPTS) {
                u32 len = (load_byte(skb, th + 1) + 1) * 8;
                next = load_byte(skb, th);
                th += len;
            } else if (next == NT_IPPROTO_FRAGMENT) {
                if (load_half(skb, th + 2) & 0xFFF8)  // a later fragment
                    goto not_tcp;
                next = load_byte(skb, th);
                th += 8;
            }
        }
        if (next != NT_IPPROTO_TCP)
            goto not_tcp;
    } else {
        goto not_tcp;
    }
    if (!nt_port_selected(0) && !nt_port_selected(load_half(skb, th)) &&
        !nt_port_selected(load_half(skb, th + 2)))
        return 0;
    nt_count(NT_CTR_KEPT);
    return -1;  // keep the whole packet

not_tcp:
    nt_count(NT_CTR_NOT_TCP);
    return 0;
}
