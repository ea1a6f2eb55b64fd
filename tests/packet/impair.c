// Test-only link impairment, since this kernel has no netem: a tc egress program (clsact,
// direct action) that drops, duplicates and reorders TCP data packets at random.
//   loss:      TC_ACT_SHOT for LOSS per mille of the packets
//   duplicate: bpf_clone_redirect to the same device for DUP per mille (the copy is marked
//              so it passes untouched)
//   reorder:   REORDER per mille get skb->priority 1:2, a slow HTB class; the others 1:1,
//              a fast one, so the slow ones leave after packets sent later.
// Only packets longer than MIN_LEN are touched: handshakes, pure ACKs, ARP and ND pass.

#define NT_DUP_MARK 0x4e5444
#define NT_TC_ACT_OK 0
#define NT_TC_ACT_SHOT 2
#define NT_MIN_LEN 120

int impair(struct __sk_buff *skb) {
    if (skb->mark == NT_DUP_MARK || skb->len <= NT_MIN_LEN)
        return NT_TC_ACT_OK;
    u32 r = bpf_get_prandom_u32() % 1000;
    if (r < LOSS)
        return NT_TC_ACT_SHOT;
    if (r < LOSS + DUP) {
        skb->mark = NT_DUP_MARK;
        bpf_clone_redirect(skb, skb->ifindex, 0);
        skb->mark = 0;
    }
    skb->priority = (bpf_get_prandom_u32() % 1000 < REORDER) ? 0x10002 : 0x10001;
    return NT_TC_ACT_OK;
}
