// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice NetworkPolicy enforcement on the host side of each pod veth.
 *
 * Policy is data: the program is compiled once and only reads maps the
 * daemon writes (layout in sluice_abi.h). Per packet it does a fixed number
 * of hash and LPM lookups, whatever the number of policies, rules or pods:
 *   endpoint (hash), config (array), conntrack (2 x hash), and for a new
 *   flow peer class (LPM) + allow set (2 x LPM) + the endpoint's flow count.
 *
 * Every verdict fails closed: unknown interface, policy not applied yet,
 * unparsable headers and unknown L3 protocols are dropped.
 *
 * The pod as attacker:
 * - Source addresses. A packet leaving the pod must carry the pod's own IPv4
 *   or IPv6 address (the endpoint entry holds them, one per family), else it
 *   is dropped as "spoofed"; a pod with no address of a family sends nothing
 *   of that family. Only IPv6 neighbour and multicast listener discovery may
 *   use the unspecified or a link-local source (below). Towards the pod, the node's addresses (class
 *   HOST) are always allowed only for packets the node itself sends
 *   (skb->ingress_ifindex == 0 on tc egress: a locally generated skb has no
 *   input device; a forwarded one has the device it came in on, which is
 *   the node's own only when it is the loopback, e.g. a connection to
 *   127.0.0.1 that the node NATs to a pod). A forwarded
 *   packet with a node source is forged and dropped as "spoofed", also when
 *   it matches a tracked flow with the node (the entry remembers the peer is
 *   the node). Traffic the node masquerades to its own address (a NodePort
 *   with SNAT) is forwarded, so it is dropped too: use
 *   externalTrafficPolicy=Local for such services.
 * - IPv6 ND (router/neighbour solicitation and advertisement, redirect)
 *   bypasses policy in any endpoint state, but only with hop limit 255 (it
 *   was not routed), a type the direction can legitimately carry (a pod sends
 *   RS, NS, NA; it receives RA, NS, NA, redirect) and on-link addresses:
 *   destination link-local (fe80::/10), solicited-node (ff02::1:ff00:0/104),
 *   all-nodes or all-routers (ff02::1, ff02::2), or towards the pod its own
 *   address (unicast NUD probes); from the pod the source must be ::,
 *   link-local or its own address. Any other ND-typed message is dropped as
 *   "nd-invalid" rather than checked as policy: it is never legitimate, and
 *   a non-isolated pod must not reach off-link neighbour caches with it.
 *   MLD (listener reports from the pod, queries to it) bypasses policy the
 *   same way only with hop limit 1, source :: or link-local and a link-scope
 *   multicast destination (ff02::/16); otherwise it is an ordinary packet.
 * - ICMP errors (v4: destination unreachable incl. fragmentation needed, time
 *   exceeded, parameter problem; v6: destination unreachable, packet too big,
 *   time exceeded, parameter problem) pass only as related to a tracked flow:
 *   the quoted header (IP + first 8 bytes of L4) must name a flow of this
 *   endpoint that is in conntrack and still allowed, and the error must be
 *   addressed to the quoted packet's sender. The rule of that flow is
 *   credited. Anything else is dropped as "icmp-unrelated", so errors cannot
 *   probe or reset others' connections. A quoted non-first fragment, or an
 *   IPv6 packet with more than 3 extension headers, quotes no ports and is
 *   unrelated.
 *
 * Conntrack: a plain (non-LRU, preallocated) hash of SLUICE_MAX_CONNTRACK
 * flows. It never evicts, so no tracked flow can lose its entry (and its
 * replies their verdict) to somebody else's new flows. Limits:
 * - Per endpoint, at most sluice_config.ct_quota flows (default 16384, 1/16
 *   of the table; counted in sluice_ct_count by atomic add on insert and
 *   subtract on delete). A new flow over the quota, or when the table is
 *   full, is dropped as "ct-full": the flooding pod's new connections fail
 *   closed while every established flow, its own included, keeps passing.
 *   The quota is checked before the insert, so CPUs racing may pass it by a
 *   few flows; sluice_ct_count has room for 2 x SLUICE_MAX_ENDPOINTS ids,
 *   and an id that finds it full is treated as over quota. A table of 256 Ki
 *   flows costs about 30 MiB (preallocated); a node whose pods really hold
 *   more established flows than that gets "ct-full" drops on new flows, not
 *   wrong verdicts.
 * - TCP state: SYN -> established (a packet in the reply direction) -> closing
 *   (FIN) or closed (RST); a new SYN on a closing or closed entry starts a new
 *   flow (policy checked again). Idle timeouts by state (defaults: SYN 60 s,
 *   established 6 h, closing 60 s, closed 10 s; other protocols 60 s) are in
 *   sluice_config, so tests can shorten them.
 * - An expired entry is deleted when a packet looks it up; entries nobody
 *   looks up are removed by sweep_ct, a program the daemon runs every 10 s
 *   (BpfOptions::conntrack.sweepInterval) through BPF_PROG_TEST_RUN
 *   (bpf_for_each_map_elem), so the quota counting stays in BPF, atomic.
 *
 * Addresses are family-aware everywhere (class trie, conntrack, fragments,
 * events): an IPv6 packet between v4-mapped addresses is IPv6 and is
 * classified by IPv6 prefixes only, as the engine does.
 *
 * Known limits, by choice:
 * - TCP sequence numbers are not tracked: a packet is matched to its flow by
 *   5-tuple (and state), not by window.
 * - Map layouts changed with the above (endpoint addresses, family-aware
 *   keys, non-LRU conntrack): pins left by an older build are not migrated;
 *   loading fails and names the pin directory to clear.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sluice_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* IPv6 extension headers walked before the L4 header; more is dropped. */
#define MAX_IPV6_EXT_HDRS 8
/* ... and in the packet an ICMPv6 error quotes; more is unrelated. */
#define MAX_QUOTED_EXT_HDRS 3

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP6_OFFSET_MASK 0xfff8
#define IP6_MF 0x0001

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define NDISC_ROUTER_SOLICITATION 133
#define NDISC_ROUTER_ADVERTISEMENT 134
#define NDISC_NEIGHBOUR_SOLICITATION 135
#define NDISC_NEIGHBOUR_ADVERTISEMENT 136
#define NDISC_REDIRECT 137
#define MLD_QUERY 130
#define MLD_REPORT 131
#define MLD_DONE 132
#define MLD2_REPORT 143

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

#define NSEC_PER_SEC 1000000000ull
#define LOOPBACK_IFINDEX 1 /* the kernel gives every namespace's lo index 1 */
#define EEXIST 17

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct sluice_class_key);
	__type(value, __u32);
	__uint(max_entries, SLUICE_MAX_CLASS_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sluice_classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* ifindex */
	__type(value, struct sluice_endpoint);
	__uint(max_entries, SLUICE_MAX_ENDPOINTS);
} sluice_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct sluice_policy_key);
	__type(value, struct sluice_policy_value);
	__uint(max_entries, SLUICE_MAX_POLICY_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sluice_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sluice_ct_key);
	__type(value, struct sluice_ct_value);
	__uint(max_entries, SLUICE_MAX_CONNTRACK);
} sluice_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* endpoint id */
	__type(value, __s64); /* flows it holds in sluice_ct */
	__uint(max_entries, SLUICE_MAX_CT_COUNTS);
} sluice_ct_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sluice_frag_key);
	__type(value, struct sluice_frag_value);
	__uint(max_entries, SLUICE_MAX_FRAGMENTS);
} sluice_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* RuleId */
	__type(value, struct sluice_counter);
	__uint(max_entries, SLUICE_MAX_RULES);
} sluice_rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* enum sluice_drop_reason */
	__type(value, struct sluice_counter);
	__uint(max_entries, SLUICE_DROP_REASON_MAX);
} sluice_drop_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct sluice_endpoint_drop_key);
	__type(value, struct sluice_counter);
	__uint(max_entries, SLUICE_MAX_CT_COUNTS);
} sluice_ep_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SLUICE_DROP_EVENTS_BYTES);
} sluice_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sluice_config);
	__uint(max_entries, 1);
} sluice_config SEC(".maps");

/* A 5-tuple: of the packet, or of the packet an ICMP error quotes. */
struct tuple {
	__u8 src[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u8 dst[16];
	__be16 sport; /* 0 for protocols without ports */
	__be16 dport;
	__u8 protocol;
	__u8 pad[3];
} __attribute__((aligned(4))); /* addr_eq compares 32-bit words */

/* What the program knows about a packet once its headers are parsed. */
struct flow {
	struct tuple t;
	struct tuple quoted; /* valid when icmp_error == 2 */
	__u32 frag_id;
	__u8 family;
	__u8 fragment;   /* part of a fragmented datagram */
	__u8 later_frag; /* a fragment other than the first: no L4 header */
	__u8 nd_type;    /* ICMPv6 ND message type, 0 when not ND */
	__u8 mld_type;   /* ICMPv6 MLD message type, 0 when not MLD */
	__u8 hop_limit;
	__u8 tcp_flags;
	__u8 icmp_error; /* 1: an ICMP error; 2: one whose quoted tuple parsed */
};

static __always_inline int has_ports(__u8 protocol)
{
	return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP ||
	       protocol == IPPROTO_SCTP;
}

static __always_inline void count(void *map, __u32 index, __u32 len)
{
	struct sluice_counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline void count_rule(__u32 rule, __u32 len)
{
	/* NOT_ISOLATED and HOST are not indexes and fall outside the array. */
	if (rule < SLUICE_MAX_RULES)
		count(&sluice_rule_stats, rule, len);
}

/* What a flow event says besides the packet: packed so the event writer is a
 * subprogram (at most five arguments) rather than inlined at every drop site,
 * which would exceed the 512-byte stack of the callers. */
#define EVENT_META(direction, reason, verdict) \
	((__u32)(direction) | ((__u32)(reason) << 8) | ((__u32)(verdict) << 16))
#define EVENT_IDS(peer_class, rule) ((__u64)(peer_class) | ((__u64)(rule) << 32))

/* Writes a flow event; a full ring buffer is counted, never waited on. */
static __noinline void flow_event(struct __sk_buff *skb, const struct flow *f,
				  const struct sluice_endpoint *ep, __u32 meta,
				  __u64 ids)
{
	struct sluice_drop_event *e;

	e = bpf_ringbuf_reserve(&sluice_drops, sizeof(*e), 0);
	if (!e) {
		count(&sluice_drop_stats, SLUICE_DROP_EVENTS_LOST, skb->len);
		return;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	e->endpoint = ep ? ep->id : 0;
	e->ifindex = skb->ifindex;
	__builtin_memcpy(e->src, f->t.src, sizeof(e->src));
	__builtin_memcpy(e->dst, f->t.dst, sizeof(e->dst));
	e->sport = f->t.sport;
	e->dport = f->t.dport;
	e->peer_class = (__u32)ids;
	e->protocol = f->t.protocol;
	e->direction = meta & 0xff;
	e->reason = (meta >> 8) & 0xff;
	e->family = f->family;
	e->verdict = (meta >> 16) & 0xff;
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->pad[2] = 0;
	e->rule = (__u32)(ids >> 32);
	e->pad2 = 0;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void count_endpoint_drop(const struct sluice_endpoint *ep,
						__u8 direction, __u32 len)
{
	struct sluice_endpoint_drop_key key = {};
	struct sluice_counter one = { .packets = 1, .bytes = len }, *c;

	key.endpoint = ep->id;
	key.direction = direction;
	c = bpf_map_lookup_elem(&sluice_ep_drops, &key);
	if (c) {
		c->packets++;
		c->bytes += len;
		return;
	}
	/* Per-CPU value: the update sets this CPU's slot (others zero). A
	 * full map loses the count, never the drop. */
	bpf_map_update_elem(&sluice_ep_drops, &key, &one, BPF_NOEXIST);
}

/* A subprogram, not inlined at each of the many drop sites (stack limit). */
static __noinline int drop_packet(struct __sk_buff *skb, const struct flow *f,
				  const struct sluice_endpoint *ep, __u32 meta,
				  __u32 peer_class)
{
	__u8 reason = (meta >> 8) & 0xff;

	count(&sluice_drop_stats, reason, skb->len);
	if (ep && (reason == SLUICE_DROP_POLICY ||
		   reason == SLUICE_DROP_POLICY_REVOKED))
		count_endpoint_drop(ep, meta & 0xff, skb->len);
	flow_event(skb, f, ep, meta, EVENT_IDS(peer_class, 0));
	return TC_ACT_SHOT;
}

static __always_inline int drop(struct __sk_buff *skb, const struct flow *f,
				const struct sluice_endpoint *ep, __u8 direction,
				__u32 peer_class, enum sluice_drop_reason reason)
{
	return drop_packet(skb, f, ep,
			   EVENT_META(direction, reason, SLUICE_VERDICT_DENIED),
			   peer_class);
}

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline __u32 classify(const __u8 addr[16], __u8 family)
{
	struct sluice_class_key key = {};
	__u32 *class_id;

	key.family = family;
	if (family == 4) {
		key.prefixlen = SLUICE_CLASS_PREFIX_FAMILY + 32;
		__builtin_memcpy(key.addr, &addr[12], 4);
	} else {
		key.prefixlen = SLUICE_CLASS_PREFIX_FAMILY + 128;
		__builtin_memcpy(key.addr, addr, 16);
	}
	class_id = bpf_map_lookup_elem(&sluice_classes, &key);
	/* The compiler maps ::/0 and 0.0.0.0/0 to WORLD; this covers a gap. */
	return class_id ? *class_id : SLUICE_CLASS_WORLD;
}

/*
 * Is (endpoint, direction, peer, protocol, port) allowed? Sets *rule to the
 * allowing RuleId and *peer_class to the peer's class.
 *
 * Two lookups are enough: an allow entry names either one class or any peer
 * (kAnyPeer = 0), and everything after the class in the key (protocol, port)
 * is matched by prefix, so the trie's longest-prefix rule already covers
 * "any protocol", "any port of a protocol" and port ranges. All entries are
 * allows, so which entry wins within a lookup only decides the credited rule.
 */
static __always_inline int policy_allows(const struct sluice_endpoint *ep,
					 __u8 direction, const __u8 peer[16],
					 __u8 family, __u8 protocol, __u16 port,
					 __u32 *rule, __u32 *peer_class)
{
	struct sluice_policy_value *v;
	struct sluice_policy_key key = {};
	__u32 isolated_flag = direction == SLUICE_DIR_INGRESS ?
				      SLUICE_EP_INGRESS_ISOLATED :
				      SLUICE_EP_EGRESS_ISOLATED;

	*peer_class = classify(peer, family);
	/* The node's own addresses always reach its pods (kubelet probes);
	 * the caller drops forwarded packets with a node source. */
	if (direction == SLUICE_DIR_INGRESS &&
	    *peer_class == SLUICE_CLASS_HOST) {
		*rule = SLUICE_RULE_HOST;
		return 1;
	}
	if (!(ep->flags & isolated_flag)) {
		*rule = SLUICE_RULE_NOT_ISOLATED;
		return 1;
	}

	key.prefixlen = SLUICE_POLICY_FULL_PREFIX;
	key.endpoint = bpf_htonl(ep->id);
	key.direction = direction;
	key.peer_class = bpf_htonl(*peer_class);
	key.protocol = protocol;
	key.port = bpf_htons(has_ports(protocol) ? port : 0);
	v = bpf_map_lookup_elem(&sluice_policy, &key);
	if (!v) {
		key.peer_class = bpf_htonl(SLUICE_CLASS_ANY);
		v = bpf_map_lookup_elem(&sluice_policy, &key);
	}
	if (!v)
		return 0;
	*rule = v->rule;
	return 1;
}

static __always_inline __u64 ct_timeout_ns(__u8 protocol, __u8 state,
					   const struct sluice_config *cfg)
{
	__u32 s = cfg->ct_other_s;

	if (protocol == IPPROTO_TCP) {
		switch (state) {
		case SLUICE_CT_TCP_SYN:
			s = cfg->ct_tcp_syn_s;
			break;
		case SLUICE_CT_TCP_CLOSING:
			s = cfg->ct_tcp_closing_s;
			break;
		case SLUICE_CT_TCP_CLOSED:
			s = cfg->ct_tcp_closed_s;
			break;
		default:
			s = cfg->ct_tcp_established_s;
			break;
		}
	}
	return (__u64)s * NSEC_PER_SEC;
}

static __always_inline int ct_expired(const struct sluice_ct_key *key,
				      const struct sluice_ct_value *ct,
				      __u64 now, const struct sluice_config *cfg)
{
	return now - ct->last_seen_ns > ct_timeout_ns(key->protocol, ct->state,
						      cfg);
}

/* Deletes a flow; only the deleter (one CPU) gives back its quota slot. */
static __always_inline void ct_delete(const struct sluice_ct_key *key)
{
	__u32 endpoint = key->endpoint;
	__s64 *n;

	if (bpf_map_delete_elem(&sluice_ct, key))
		return;
	n = bpf_map_lookup_elem(&sluice_ct_count, &endpoint);
	if (n)
		__sync_fetch_and_add(n, -1);
}

/* Tracks a new flow within the endpoint's quota; 0 when tracked. */
static __always_inline int ct_create(const struct sluice_ct_key *key,
				     const struct sluice_ct_value *value,
				     const struct sluice_config *cfg)
{
	__u32 endpoint = key->endpoint;
	__s64 zero = 0, *n;
	long err;

	n = bpf_map_lookup_elem(&sluice_ct_count, &endpoint);
	if (!n) {
		bpf_map_update_elem(&sluice_ct_count, &endpoint, &zero,
				    BPF_NOEXIST);
		n = bpf_map_lookup_elem(&sluice_ct_count, &endpoint);
		if (!n)
			return -1;
	}
	/* Checked before the insert, so concurrent CPUs may pass it by a
	 * few flows: a soft limit, never one that evicts. */
	if (cfg->ct_quota && *n >= (__s64)cfg->ct_quota)
		return -1;
	err = bpf_map_update_elem(&sluice_ct, key, value, BPF_NOEXIST);
	if (err == -EEXIST) /* another CPU tracked it first */
		return 0;
	if (err)
		return -1; /* E2BIG: the table is full */
	__sync_fetch_and_add(n, 1);
	return 0;
}

static __always_inline void ct_fill_key(struct sluice_ct_key *key,
					const struct tuple *t, __u8 family,
					__u32 endpoint, __u8 direction,
					int reversed)
{
	if (reversed) {
		__builtin_memcpy(key->src, t->dst, 16);
		__builtin_memcpy(key->dst, t->src, 16);
		key->sport = t->dport;
		key->dport = t->sport;
		key->direction = direction ^ 1;
	} else {
		__builtin_memcpy(key->src, t->src, 16);
		__builtin_memcpy(key->dst, t->dst, 16);
		key->sport = t->sport;
		key->dport = t->dport;
		key->direction = direction;
	}
	key->endpoint = endpoint;
	key->protocol = t->protocol;
	key->family = family;
	key->pad = 0;
}

/*
 * The live entry of the flow `t` belongs to, seen by the endpoint in
 * `direction`: first as the flow's first packet's orientation, then as a
 * reply (reversed tuple, first seen in the other direction). *reply says
 * which; *key holds the found entry's key. Expired entries are deleted.
 */
static __always_inline struct sluice_ct_value *
ct_find(struct sluice_ct_key *key, const struct tuple *t, __u8 family,
	__u32 endpoint, __u8 direction, __u64 now,
	const struct sluice_config *cfg, int *reply)
{
	struct sluice_ct_value *ct;
	int r;

	for (r = 0; r < 2; r++) {
		ct_fill_key(key, t, family, endpoint, direction, r);
		ct = bpf_map_lookup_elem(&sluice_ct, key);
		if (!ct)
			continue;
		if (ct_expired(key, ct, now, cfg)) {
			ct_delete(key);
			continue;
		}
		*reply = r;
		return ct;
	}
	return 0;
}

/*
 * A packet of a tracked flow. With EstablishedMode::Recheck, a flow last
 * checked under an older policy revision is checked again against the
 * current policy, in the direction and orientation of its first packet, so a
 * newly written deny cuts connections that are already open.
 */
static __always_inline int ct_recheck(const struct sluice_ct_key *key,
				      struct sluice_ct_value *ct,
				      const struct sluice_endpoint *ep,
				      const struct sluice_config *cfg,
				      __u32 *rule)
{
	__u32 peer_class;
	__u32 r;

	if (!(cfg->flags & SLUICE_CONFIG_ESTABLISHED_KEEP) &&
	    ct->revision != cfg->revision) {
		const __u8 *peer = key->direction == SLUICE_DIR_EGRESS ?
					   key->dst : key->src;

		if (!policy_allows(ep, key->direction, peer, key->family,
				   key->protocol, bpf_ntohs(key->dport), &r,
				   &peer_class)) {
			ct_delete(key);
			return 0;
		}
		ct->revision = cfg->revision;
		ct->rule = r;
	}
	*rule = ct->rule;
	return 1;
}

static __always_inline void ct_tcp_update(struct sluice_ct_value *ct,
					  __u8 flags, int reply)
{
	if (flags & TCP_FLAG_RST)
		ct->state = SLUICE_CT_TCP_CLOSED;
	else if (flags & TCP_FLAG_FIN) {
		if (ct->state < SLUICE_CT_TCP_CLOSING)
			ct->state = SLUICE_CT_TCP_CLOSING;
	} else if (ct->state == SLUICE_CT_TCP_SYN && reply)
		ct->state = SLUICE_CT_TCP_ESTABLISHED;
}

static __always_inline __u8 ct_initial_state(const struct flow *f)
{
	if (f->t.protocol != IPPROTO_TCP)
		return SLUICE_CT_OTHER;
	if (f->tcp_flags & TCP_FLAG_FIN)
		return SLUICE_CT_TCP_CLOSING;
	if ((f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return SLUICE_CT_TCP_SYN;
	return SLUICE_CT_TCP_ESTABLISHED; /* picked up mid-stream */
}

static __always_inline int is_echo(__u8 protocol, __u8 type)
{
	return (protocol == IPPROTO_ICMP &&
		(type == ICMP_ECHO || type == ICMP_ECHOREPLY)) ||
	       (protocol == IPPROTO_ICMPV6 &&
		(type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY));
}

/*
 * The packet an ICMP error quotes, at `off` (its IP header). Leaves
 * f->icmp_error at 1 when it names no trackable flow (truncated, a later
 * fragment, IPv6 extension headers, a protocol without ports or echo id).
 */
static __always_inline void parse_quoted(struct __sk_buff *skb, __u32 off,
					 struct flow *f)
{
	struct tuple *q = &f->quoted;
	__u8 l4[8];

	if (f->family == 4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) ||
		    ip.version != 4 || ip.ihl < 5 ||
		    (bpf_ntohs(ip.frag_off) & IP_OFFSET))
			return;
		q->src[10] = q->src[11] = 0xff;
		q->dst[10] = q->dst[11] = 0xff;
		__builtin_memcpy(&q->src[12], &ip.saddr, 4);
		__builtin_memcpy(&q->dst[12], &ip.daddr, 4);
		q->protocol = ip.protocol;
		off += ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) ||
		    ip6.version != 6)
			return;
		__u8 ext[4];
		int i;

		__builtin_memcpy(q->src, &ip6.saddr, 16);
		__builtin_memcpy(q->dst, &ip6.daddr, 16);
		q->protocol = ip6.nexthdr;
		off += sizeof(ip6);
		/* A few extension headers, e.g. the fragment header of a
		 * fragmented datagram that met a smaller MTU (packet too big). */
		for (i = 0; i < MAX_QUOTED_EXT_HDRS; i++) {
			if (q->protocol != IPPROTO_HOPOPTS &&
			    q->protocol != IPPROTO_ROUTING &&
			    q->protocol != IPPROTO_DSTOPTS &&
			    q->protocol != IPPROTO_FRAGMENT)
				break;
			if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)))
				return;
			if (q->protocol == IPPROTO_FRAGMENT) {
				/* Only a first fragment quotes ports. */
				if ((((__u16)ext[2] << 8) | ext[3]) &
				    IP6_OFFSET_MASK)
					return;
				off += 8;
			} else {
				off += (ext[1] + 1) * 8;
			}
			q->protocol = ext[0];
		}
	}
	if (bpf_skb_load_bytes(skb, off, l4, sizeof(l4)))
		return;
	if (has_ports(q->protocol)) {
		__builtin_memcpy(&q->sport, &l4[0], 2);
		__builtin_memcpy(&q->dport, &l4[2], 2);
	} else if (is_echo(q->protocol, l4[0])) {
		__builtin_memcpy(&q->sport, &l4[4], 2);
		q->dport = q->sport;
	} else {
		return;
	}
	f->icmp_error = 2;
}

static __always_inline int is_icmp_error(__u8 protocol, __u8 type)
{
	if (protocol == IPPROTO_ICMP)
		return type == ICMP_DEST_UNREACH ||
		       type == ICMP_TIME_EXCEEDED ||
		       type == ICMP_PARAMETERPROB;
	return protocol == IPPROTO_ICMPV6 && type >= ICMPV6_DEST_UNREACH &&
	       type <= ICMPV6_PARAMPROB;
}

static __always_inline int parse_l4(struct __sk_buff *skb, __u32 off,
				    struct flow *f)
{
	__u8 hdr[14];

	if (f->later_frag)
		return 0;
	if (f->t.protocol == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, off, hdr, 14))
			return -1;
		__builtin_memcpy(&f->t.sport, &hdr[0], 2);
		__builtin_memcpy(&f->t.dport, &hdr[2], 2);
		f->tcp_flags = hdr[13];
		return 0;
	}
	if (has_ports(f->t.protocol)) {
		/* UDP and SCTP start with source and destination port too. */
		if (bpf_skb_load_bytes(skb, off, hdr, 4))
			return -1;
		__builtin_memcpy(&f->t.sport, &hdr[0], 2);
		__builtin_memcpy(&f->t.dport, &hdr[2], 2);
		return 0;
	}
	if (f->t.protocol == IPPROTO_ICMP || f->t.protocol == IPPROTO_ICMPV6) {
		if (bpf_skb_load_bytes(skb, off, hdr, 8))
			return -1;
		/* Echo request and reply share the identifier: track it as both ports. */
		if (is_echo(f->t.protocol, hdr[0])) {
			__builtin_memcpy(&f->t.sport, &hdr[4], 2);
			f->t.dport = f->t.sport;
		} else if (is_icmp_error(f->t.protocol, hdr[0])) {
			f->icmp_error = 1;
			/* An error of a first fragment still quotes a packet. */
			parse_quoted(skb, off + 8, f);
		} else if (f->t.protocol == IPPROTO_ICMPV6 &&
			   hdr[0] >= NDISC_ROUTER_SOLICITATION &&
			   hdr[0] <= NDISC_REDIRECT) {
			f->nd_type = hdr[0];
		} else if (f->t.protocol == IPPROTO_ICMPV6 &&
			   ((hdr[0] >= MLD_QUERY && hdr[0] <= MLD_DONE) ||
			    hdr[0] == MLD2_REPORT)) {
			f->mld_type = hdr[0];
		}
	}
	return 0;
}

/* Not inlined: the parser's header buffers get their own stack frame. */
static __noinline int parse_ipv4(struct __sk_buff *skb, struct flow *f)
{
	struct iphdr ip;
	__u16 frag_off;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) || ip.ihl < 5)
		return -1;
	f->family = 4;
	f->t.src[10] = f->t.src[11] = 0xff;
	f->t.dst[10] = f->t.dst[11] = 0xff;
	__builtin_memcpy(&f->t.src[12], &ip.saddr, 4);
	__builtin_memcpy(&f->t.dst[12], &ip.daddr, 4);
	f->t.protocol = ip.protocol;
	frag_off = bpf_ntohs(ip.frag_off);
	if (frag_off & (IP_MF | IP_OFFSET)) {
		f->fragment = 1;
		f->frag_id = bpf_ntohs(ip.id);
		f->later_frag = (frag_off & IP_OFFSET) != 0;
	}
	return parse_l4(skb, ETH_HLEN + ip.ihl * 4, f);
}

static __noinline int parse_ipv6(struct __sk_buff *skb, struct flow *f)
{
	struct ipv6hdr ip6;
	__u32 off = ETH_HLEN + sizeof(ip6);
	__u8 nexthdr;
	__u8 ext[8];
	int i;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
		return -1;
	f->family = 6;
	f->hop_limit = ip6.hop_limit;
	__builtin_memcpy(f->t.src, &ip6.saddr, 16);
	__builtin_memcpy(f->t.dst, &ip6.daddr, 16);
	nexthdr = ip6.nexthdr;

	/* Bounded walk over the extension headers that may precede L4. */
	for (i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (bpf_skb_load_bytes(skb, off, ext, 2))
				return -1;
			nexthdr = ext[0];
			off += (ext[1] + 1) * 8;
			continue;
		case IPPROTO_AH:
			if (bpf_skb_load_bytes(skb, off, ext, 2))
				return -1;
			nexthdr = ext[0];
			off += (ext[1] + 2) * 4;
			continue;
		case IPPROTO_FRAGMENT: {
			__u16 frag_off;

			if (bpf_skb_load_bytes(skb, off, ext, 8))
				return -1;
			nexthdr = ext[0];
			frag_off = ((__u16)ext[2] << 8) | ext[3];
			f->fragment = 1;
			__builtin_memcpy(&f->frag_id, &ext[4], 4);
			off += 8;
			if (frag_off & IP6_OFFSET_MASK) {
				/* The rest is payload; nexthdr names what it
				 * continues. */
				f->later_frag = 1;
				f->t.protocol = nexthdr;
				return 0;
			}
			continue;
		}
		default:
			f->t.protocol = nexthdr;
			return parse_l4(skb, off, f);
		}
	}
	return -1;
}

static __always_inline int is_link_local(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int is_unspecified(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

/* ff02::1, ff02::2 or ff02::1:ffXX:XXXX: multicast that stays on the link. */
static __always_inline int is_nd_multicast(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	if (w[0] != bpf_htonl(0xff020000) || w[1] != 0)
		return 0;
	if (w[2] == 0)
		return w[3] == bpf_htonl(1) || w[3] == bpf_htonl(2);
	return w[2] == bpf_htonl(1) && a[12] == 0xff;
}

static __always_inline int own_ipv6(const struct sluice_endpoint *ep,
				    const __u8 *a)
{
	return ep && ep->has_ipv6 && addr_eq(ep->ipv6, a);
}

/* Neighbour discovery that may bypass policy (see the header comment). */
static __always_inline int nd_valid(const struct flow *f,
				    const struct sluice_endpoint *ep,
				    __u8 direction)
{
	const __u8 *src = f->t.src, *dst = f->t.dst;

	if (f->hop_limit != 255 || f->fragment)
		return 0;
	if (direction == SLUICE_DIR_EGRESS) {
		if (f->nd_type != NDISC_ROUTER_SOLICITATION &&
		    f->nd_type != NDISC_NEIGHBOUR_SOLICITATION &&
		    f->nd_type != NDISC_NEIGHBOUR_ADVERTISEMENT)
			return 0;
		if (!is_unspecified(src) && !is_link_local(src) &&
		    !own_ipv6(ep, src))
			return 0;
		return is_link_local(dst) || is_nd_multicast(dst);
	}
	if (f->nd_type == NDISC_ROUTER_SOLICITATION)
		return 0;
	return is_link_local(dst) || is_nd_multicast(dst) || own_ipv6(ep, dst);
}

/*
 * Multicast listener discovery that stays on the link: hop limit 1, from the
 * unspecified or a link-local source, to link-scope multicast (ff02::/16).
 * The pod's stack reports the groups it joins (solicited-node included) when
 * its interface comes up; the node may query. Anything else is checked like
 * any packet (so a report from a link-local source with another hop limit or
 * destination is "spoofed").
 */
static __always_inline int mld_valid(const struct flow *f, __u8 direction)
{
	const __u8 *src = f->t.src, *dst = f->t.dst;

	if (f->hop_limit != 1 || f->fragment || dst[0] != 0xff ||
	    dst[1] != 0x02 || (!is_unspecified(src) && !is_link_local(src)))
		return 0;
	if (direction == SLUICE_DIR_EGRESS)
		return f->mld_type != MLD_QUERY;
	return f->mld_type == MLD_QUERY;
}

/* Is the packet's source one of the endpoint's own addresses? */
static __always_inline int source_is_own(const struct flow *f,
					 const struct sluice_endpoint *ep)
{
	if (f->family == 4) {
		const __u32 *own = (const __u32 *)ep->ipv4;
		const __u32 *src = (const __u32 *)&f->t.src[12];

		return ep->has_ipv4 && *own == *src;
	}
	return own_ipv6(ep, f->t.src);
}

/*
 * A fragment after the first carries no ports, so it cannot be checked on
 * its own. It gets the verdict recorded for the first fragment of the same
 * datagram at the same endpoint; without one (first fragment lost, not seen
 * yet, or never sent) it is dropped, so no later fragment can bypass policy.
 * Out-of-order delivery of a first fragment therefore loses the datagram.
 */
static __always_inline void frag_key(struct sluice_frag_key *key,
				     const struct flow *f, __u32 endpoint,
				     __u8 direction)
{
	__builtin_memcpy(key->src, f->t.src, 16);
	__builtin_memcpy(key->dst, f->t.dst, 16);
	key->id = f->frag_id;
	key->endpoint = endpoint;
	key->protocol = f->t.protocol;
	key->direction = direction;
	key->family = f->family;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 direction)
{
	struct sluice_ct_value *ct, new_ct = {};
	struct sluice_ct_key key = {};
	const struct sluice_endpoint *ep;
	const struct sluice_config *cfg;
	__u32 zero = 0, ifindex = skb->ifindex;
	__u32 rule = 0, peer_class = 0;
	/* tc egress: 0 for a packet the node itself sent, else its input device;
	 * only the node's own packets come in on its loopback. */
	int forwarded = direction == SLUICE_DIR_INGRESS &&
			skb->ingress_ifindex != 0 &&
			skb->ingress_ifindex != LOOPBACK_IFINDEX;
	struct flow f = {};
	enum sluice_drop_reason reason;
	int allowed, err, reply = 0;
	__u64 now;

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK; /* the pod resolves its gateway in any state */

	ep = bpf_map_lookup_elem(&sluice_endpoints, &ifindex);
	if (skb->protocol == bpf_htons(ETH_P_IP))
		err = parse_ipv4(skb, &f);
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		err = parse_ipv6(skb, &f);
	else
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_UNSUPPORTED_L3);
	if (err)
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_MALFORMED);
	if (f.nd_type) {
		/* The pod reaches its gateway in any state, policy or not. */
		if (nd_valid(&f, ep, direction))
			return TC_ACT_OK;
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_ND_INVALID);
	}
	if (f.mld_type && mld_valid(&f, direction))
		return TC_ACT_OK;

	if (!ep)
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_NO_ENDPOINT);
	if (direction == SLUICE_DIR_EGRESS && !source_is_own(&f, ep))
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_SPOOFED);
	if (!(ep->flags & SLUICE_EP_POLICY_READY))
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_NOT_READY);
	cfg = bpf_map_lookup_elem(&sluice_config, &zero);
	if (!cfg)
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_NOT_READY);

	if (f.later_frag) {
		struct sluice_frag_key fk = {};
		struct sluice_frag_value *fv;

		frag_key(&fk, &f, ep->id, direction);
		fv = bpf_map_lookup_elem(&sluice_frags, &fk);
		if (!fv)
			return drop(skb, &f, ep, direction, 0,
				    SLUICE_DROP_FRAG_NO_FIRST);
		if (!fv->allowed)
			return drop(skb, &f, ep, direction, 0,
				    SLUICE_DROP_FRAG_DENIED);
		count_rule(fv->rule, skb->len);
		return TC_ACT_OK;
	}

	now = bpf_ktime_get_ns();
	if (f.icmp_error) {
		/* The quoted packet is one the error's receiver sent: it went
		 * the other way through this endpoint. */
		const struct tuple *q = &f.quoted;

		allowed = 0;
		reason = SLUICE_DROP_ICMP_UNRELATED;
		if (f.icmp_error == 2 &&
		    addr_eq(direction == SLUICE_DIR_INGRESS ? f.t.dst : f.t.src,
			    direction == SLUICE_DIR_INGRESS ? q->src : q->dst)) {
			ct = ct_find(&key, q, f.family, ep->id, direction ^ 1,
				     now, cfg, &reply);
			if (ct) {
				allowed = ct_recheck(&key, ct, ep, cfg, &rule);
				reason = SLUICE_DROP_POLICY_REVOKED;
			}
		}
		goto verdict;
	}

	ct = ct_find(&key, &f.t, f.family, ep->id, direction, now, cfg, &reply);
	if (ct && forwarded && ct->host_peer)
		return drop(skb, &f, ep, direction, SLUICE_CLASS_HOST,
			    SLUICE_DROP_SPOOFED);
	if (ct && f.t.protocol == IPPROTO_TCP &&
	    (f.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
	    ct->state >= SLUICE_CT_TCP_CLOSING) {
		/* A new connection on the tuple of a closed one. */
		ct_delete(&key);
		ct = 0;
	}
	if (ct) {
		allowed = ct_recheck(&key, ct, ep, cfg, &rule);
		reason = SLUICE_DROP_POLICY_REVOKED;
		if (allowed) {
			ct->last_seen_ns = now;
			if (f.t.protocol == IPPROTO_TCP)
				ct_tcp_update(ct, f.tcp_flags, reply);
		}
	} else {
		const __u8 *peer = direction == SLUICE_DIR_EGRESS ? f.t.dst :
								   f.t.src;

		allowed = policy_allows(ep, direction, peer, f.family,
					f.t.protocol, bpf_ntohs(f.t.dport),
					&rule, &peer_class);
		reason = SLUICE_DROP_POLICY;
		if (forwarded && peer_class == SLUICE_CLASS_HOST)
			return drop(skb, &f, ep, direction, peer_class,
				    SLUICE_DROP_SPOOFED);
		/* Tracked even when not isolated, so a later policy sees the
		 * flow the same way. A RST alone opens nothing. */
		if (allowed && !(f.tcp_flags & TCP_FLAG_RST)) {
			ct_fill_key(&key, &f.t, f.family, ep->id, direction, 0);
			new_ct.revision = cfg->revision;
			new_ct.last_seen_ns = now;
			new_ct.rule = rule;
			new_ct.state = ct_initial_state(&f);
			new_ct.host_peer = peer_class == SLUICE_CLASS_HOST;
			if (ct_create(&key, &new_ct, cfg))
				return drop(skb, &f, ep, direction, peer_class,
					    SLUICE_DROP_CT_FULL);
			/* The first packet of a new flow: reported when
			 * asked, and always where an audit-mode policy
			 * applies (the daemon judges it against that). */
			if ((cfg->flags & SLUICE_CONFIG_LOG_ALLOWED) ||
			    (ep->flags & SLUICE_EP_AUDITED))
				flow_event(skb, &f, ep,
					   EVENT_META(direction,
						      SLUICE_DROP_NONE,
						      SLUICE_VERDICT_ALLOWED),
					   EVENT_IDS(peer_class, rule));
		}
	}
verdict:
	if (f.fragment) {
		/* First fragment: later ones of this datagram follow it. */
		struct sluice_frag_key fk = {};
		struct sluice_frag_value fv = { .rule = rule, .allowed = allowed };

		frag_key(&fk, &f, ep->id, direction);
		bpf_map_update_elem(&sluice_frags, &fk, &fv, BPF_ANY);
	}
	if (!allowed)
		return drop(skb, &f, ep, direction, peer_class, reason);
	count_rule(rule, skb->len);
	return TC_ACT_OK;
}

/*
 * tc ingress of the host-side veth: packets the pod sends, i.e. the pod's
 * egress. The peer is the destination address.
 */
SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	return handle(skb, SLUICE_DIR_EGRESS);
}

/*
 * tc egress of the host-side veth: packets delivered to the pod, i.e. the
 * pod's ingress. The peer is the source address.
 */
SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	return handle(skb, SLUICE_DIR_INGRESS);
}

struct sweep_ctx {
	struct sluice_config cfg;
	__u64 now;
	__u32 deleted;
};

static long sweep_one(void *map, struct sluice_ct_key *key,
		      struct sluice_ct_value *ct, struct sweep_ctx *ctx)
{
	if (ct_expired(key, ct, ctx->now, &ctx->cfg)) {
		__u32 endpoint = key->endpoint;
		__s64 *n;

		if (bpf_map_delete_elem(&sluice_ct, key) == 0) {
			n = bpf_map_lookup_elem(&sluice_ct_count, &endpoint);
			if (n)
				__sync_fetch_and_add(n, -1);
			ctx->deleted++;
		}
	}
	return 0;
}

/*
 * Not attached: the daemon runs it (BPF_PROG_TEST_RUN) to delete expired
 * flows nobody looks up any more. Returns how many it deleted.
 */
SEC("tc")
int sweep_ct(struct __sk_buff *skb)
{
	struct sweep_ctx ctx = {};
	struct sluice_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&sluice_config, &zero);
	if (!cfg)
		return 0;
	ctx.cfg = *cfg;
	ctx.now = bpf_ktime_get_ns();
	bpf_for_each_map_elem(&sluice_ct, sweep_one, &ctx, 0);
	return ctx.deleted;
}
