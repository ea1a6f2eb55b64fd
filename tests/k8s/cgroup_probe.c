// Test probe: counts getppid() calls per cgroup v2 id, only for ids in `allowed`.
// Stands for the capture's in-kernel cgroup filter in tests/k8s/test_targeting.py.
BPF_HASH(allowed, u64, u8, 1024);
BPF_HASH(counts, u64, u64, 1024);
BPF_ARRAY(skipped, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u64 id = bpf_get_current_cgroup_id();
    if (!allowed.lookup(&id)) {
        int zero = 0;
        u64 *s = skipped.lookup(&zero);
        if (s) __sync_fetch_and_add(s, 1);
        return 0;
    }
    u64 one = 1;
    u64 *c = counts.lookup(&id);
    if (c) __sync_fetch_and_add(c, 1);
    else counts.update(&id, &one);
    return 0;
}
