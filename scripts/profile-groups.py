#!/usr/bin/env python3
"""Groups a sampling profile by where the time goes.

Reads `perf script -F pid,ip,sym` on stdin (a sample per line, or a pid
line followed by its call chain, leaf first) and prints, for each process, its share of all samples, then for the
process PID given as the first argument its samples grouped by layer.

    perf record -a -e cpu-clock -F 999 -o gavel-perf.data -- sleep 4
    perf script -i gavel-perf.data -F pid,ip,sym | scripts/profile-groups.py LEADER_PID
"""

import re
import sys
from collections import Counter

# First match wins: the order matters (the kernel's TCP before its scheduler).
GROUPS = [
    ("kernel: TCP over loopback, sockets", r"^(bbr_|eth_|handle_softirqs|__send$|__sk_|tcp_|__tcp|skb_|__skb|sk_|sock_|__sock|inet_|__inet|ip_|__ip|ipv4_|loopback_|__dev_|dev_|netif_|__netif|net_|__napi|process_backlog|kfree_skb|__kfree_skb|__alloc_skb|alloc_skb|lock_sock|release_sock|__release_sock|raw_local_deliver|validate_xmit|__local_bh|__copy_skb|_copy_|copy_|__check_object_size|check_heap)"),
    ("kernel: wakeups, scheduler, futex, epoll", r"^(__pv_queued|_raw_spin|select_estimate|try_to_wake_up|__wake_up|wake_up|ep_|__ep|do_epoll|futex|__futex|schedule|__schedule|finish_task_switch|enqueue_|dequeue_|select_task|update_|pick_next|psi_|ttwu|pv_native|native_|hrtimer|__hrtimer|__mod_timer|mod_timer|timerqueue|ktime|read_tsc|irq|__irq|do_idle|cpuidle|default_idle|__sysvec|sysvec)"),
    ("kernel: syscall entry, fd lookup, memory, other", r"^(\[k\]|fdget|__virt_addr|_find_|__x86_indirect|__usecs|__xfrm|bpf_|___slab|put_cpu|napi_|do_syscall|entry_|syscall|__x64|__fget|fput|__fdget|x64_sys|__rcu|rcu_|kmem_|kfree|__kmalloc|kmalloc|__slab|slab_|memcg|mem_cgroup|__mem|page_|__page|clear_page|mod_|__list|rb_|__rb|security_|apparmor|fsnotify|vfs_|__vfs|ksys_|__sys_|sys_|import_|iov_|__import|__get_user|__put_user|_raw_|__check|check_|refill_|__refill|__cond_resched|preempt_|__fsnotify|exit_to_user|syscall_exit|__audit)"),
    ("HTTP/2 (h2, hyper, http-body): framing, HPACK, streams", r"(^h2::|<h2::|^hyper|<hyper|hyper_util|http_body)"),
    ("allocator (malloc, free)", r"(malloc|^free$|cfree|_int_free|mi_|_mi_|__libc_calloc|realloc|unlink_chunk)"),
    ("tokio: tasks, channels, timers, I/O driver", r"(tokio|mio::|<mio|futures_|atomic_waker|event_listener)"),
    ("tonic, tower, routing (axum)", r"(tonic|tower|axum|matchit|percent_encoding)"),
    ("prost encoding and decoding", r"(prost)"),
    ("gavel itself", r"gavel::"),
    ("bytes, collections, std, libc", r"(bytes::|<bytes|alloc::|core::|std::|hashbrown|__mem|memcpy|memmove|memset|memcmp|__libc|pthread|clock_gettime|__vdso|slab::|indexmap|http::)"),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in GROUPS]


def group_of(symbol):
    for name, pattern in COMPILED:
        if pattern.search(symbol):
            return name
    return "other"


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else None
    per_process = Counter()
    per_group = Counter()
    total = 0
    pending = None  # a sample whose symbol is on the next line (call chains)

    def count(pid, symbol):
        nonlocal total
        total += 1
        per_process[pid] += 1
        if pid == target:
            per_group[group_of(symbol)] += 1

    for line in sys.stdin:
        if not line.strip():
            continue
        if line[0].isspace():
            # A frame of a call chain: the first one is the sample's leaf.
            if pending is not None:
                frame = line.split(None, 1)
                count(pending, frame[1].strip() if len(frame) > 1 else "")
                pending = None
            continue
        parts = line.split(None, 1)
        if len(parts) > 1 and parts[1].strip():
            count(parts[0], re.sub(r"^[0-9a-f]+\s+", "", parts[1].strip()))
        else:
            pending = parts[0]
    if not total:
        sys.exit("no samples on stdin")
    print("| process | share of all samples |")
    print("|---|---|")
    for pid, count in per_process.most_common(8):
        print(f"| {pid} | {100 * count / total:.1f} % |")
    if target:
        samples = sum(per_group.values())
        print(f"\n| where, in process {target} | share of its samples |")
        print("|---|---|")
        for name, count in per_group.most_common():
            print(f"| {name} | {100 * count / samples:.1f} % |")


if __name__ == "__main__":
    main()
