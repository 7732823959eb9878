// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice NetworkPolicy enforcement on the host side of each pod veth.
 *
 * Policy is data: the program is compiled once and only reads maps the
 * daemon writes (layout in sluice_abi.h). Per packet it does a fixed number
 * of hash and LPM lookups, whatever the number of policies, rules or pods:
 *   endpoint (hash), config (array), conntrack (2 x LRU hash), and for a new
 *   flow peer class (LPM) + allow set (2 x LPM).
 *
 * Every verdict fails closed: unknown interface, policy not applied yet,
 * unparsable headers and unknown L3 protocols are dropped.
 *
 * Known limits, by choice:
 * - ICMP errors (destination unreachable, packet too big, time exceeded) are
 *   not matched to the flow they quote; they are checked as new ICMP packets,
 *   so an isolated pod without an any-protocol rule does not get them (path
 *   MTU discovery relies on the veth MTU being right).
 * - Conntrack has no TCP state machine and no timeouts: entries of closed
 *   connections stay until the LRU evicts them. A reply is matched by its
 *   5-tuple only.
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

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP6_OFFSET_MASK 0xfff8
#define IP6_MF 0x0001

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define NDISC_ROUTER_SOLICITATION 133
#define NDISC_REDIRECT 137

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
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sluice_ct_key);
	__type(value, struct sluice_ct_value);
	__uint(max_entries, SLUICE_MAX_CONNTRACK);
} sluice_ct SEC(".maps");

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
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SLUICE_DROP_EVENTS_BYTES);
} sluice_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sluice_config);
	__uint(max_entries, 1);
} sluice_config SEC(".maps");

/* What the program knows about a packet once its headers are parsed. */
struct flow {
	__u8 src[16]; /* IPv4 as ::ffff:a.b.c.d, like the class trie */
	__u8 dst[16];
	__be16 sport; /* 0 for protocols without ports */
	__be16 dport;
	__u32 frag_id;
	__u8 protocol;
	__u8 family;
	__u8 fragment;   /* part of a fragmented datagram */
	__u8 later_frag; /* a fragment other than the first: no L4 header */
	__u8 bypass;     /* link-local control (IPv6 ND) the pod needs in any state */
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

static __always_inline int drop(struct __sk_buff *skb, const struct flow *f,
				const struct sluice_endpoint *ep, __u8 direction,
				__u32 peer_class, enum sluice_drop_reason reason)
{
	struct sluice_drop_event *e;

	count(&sluice_drop_stats, reason, skb->len);
	e = bpf_ringbuf_reserve(&sluice_drops, sizeof(*e), 0);
	if (!e) {
		count(&sluice_drop_stats, SLUICE_DROP_EVENTS_LOST, skb->len);
		return TC_ACT_SHOT;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	e->endpoint = ep ? ep->id : 0;
	e->ifindex = skb->ifindex;
	__builtin_memcpy(e->src, f->src, sizeof(e->src));
	__builtin_memcpy(e->dst, f->dst, sizeof(e->dst));
	e->sport = f->sport;
	e->dport = f->dport;
	e->peer_class = peer_class;
	e->protocol = f->protocol;
	e->direction = direction;
	e->reason = reason;
	e->family = f->family;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
	return TC_ACT_SHOT;
}

static __always_inline __u32 classify(const __u8 addr[16])
{
	struct sluice_class_key key = { .prefixlen = 128 };
	__u32 *class_id;

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
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
					 __u8 protocol, __u16 port, __u32 *rule,
					 __u32 *peer_class)
{
	struct sluice_policy_value *v;
	struct sluice_policy_key key = {};
	__u32 isolated_flag = direction == SLUICE_DIR_INGRESS ?
				      SLUICE_EP_INGRESS_ISOLATED :
				      SLUICE_EP_EGRESS_ISOLATED;

	*peer_class = classify(peer);
	/* The node's own addresses always reach its pods (kubelet probes). */
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

/*
 * A packet of a tracked flow. With EstablishedMode::Recheck, a flow last
 * checked under an older policy revision is checked again against the
 * current policy, in the direction and orientation of its first packet, so a
 * newly written deny cuts connections that are already open.
 */
static __always_inline int ct_established(const struct sluice_ct_key *key,
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

		if (!policy_allows(ep, key->direction, peer, key->protocol,
				   bpf_ntohs(key->dport), &r, &peer_class)) {
			bpf_map_delete_elem(&sluice_ct, key);
			return 0;
		}
		ct->revision = cfg->revision;
		ct->rule = r;
	}
	ct->last_seen_ns = bpf_ktime_get_ns();
	*rule = ct->rule;
	return 1;
}

static __always_inline int parse_l4(struct __sk_buff *skb, __u32 off,
				    struct flow *f)
{
	__u8 hdr[8];

	if (f->later_frag)
		return 0;
	if (has_ports(f->protocol)) {
		/* TCP, UDP and SCTP all start with source and destination port. */
		if (bpf_skb_load_bytes(skb, off, hdr, 4))
			return -1;
		__builtin_memcpy(&f->sport, &hdr[0], 2);
		__builtin_memcpy(&f->dport, &hdr[2], 2);
		return 0;
	}
	if (f->protocol == IPPROTO_ICMP || f->protocol == IPPROTO_ICMPV6) {
		if (bpf_skb_load_bytes(skb, off, hdr, 8))
			return -1;
		/* Echo request and reply share the identifier: track it as both ports. */
		if ((f->protocol == IPPROTO_ICMP &&
		     (hdr[0] == ICMP_ECHO || hdr[0] == ICMP_ECHOREPLY)) ||
		    (f->protocol == IPPROTO_ICMPV6 &&
		     (hdr[0] == ICMPV6_ECHO_REQUEST ||
		      hdr[0] == ICMPV6_ECHO_REPLY))) {
			__builtin_memcpy(&f->sport, &hdr[4], 2);
			f->dport = f->sport;
		}
		/* Router solicitation/advertisement, neighbour solicitation/
		 * advertisement and redirect: link-local (hop limit 255 checked
		 * by the caller), needed to reach the gateway in any state. */
		if (f->protocol == IPPROTO_ICMPV6 &&
		    hdr[0] >= NDISC_ROUTER_SOLICITATION &&
		    hdr[0] <= NDISC_REDIRECT)
			f->bypass = 1;
	}
	return 0;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct flow *f)
{
	struct iphdr ip;
	__u16 frag_off;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) || ip.ihl < 5)
		return -1;
	f->family = 4;
	f->src[10] = f->src[11] = 0xff;
	f->dst[10] = f->dst[11] = 0xff;
	__builtin_memcpy(&f->src[12], &ip.saddr, 4);
	__builtin_memcpy(&f->dst[12], &ip.daddr, 4);
	f->protocol = ip.protocol;
	frag_off = bpf_ntohs(ip.frag_off);
	if (frag_off & (IP_MF | IP_OFFSET)) {
		f->fragment = 1;
		f->frag_id = bpf_ntohs(ip.id);
		f->later_frag = (frag_off & IP_OFFSET) != 0;
	}
	return parse_l4(skb, ETH_HLEN + ip.ihl * 4, f);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct flow *f)
{
	struct ipv6hdr ip6;
	__u32 off = ETH_HLEN + sizeof(ip6);
	__u8 nexthdr;
	__u8 ext[8];
	int i;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
		return -1;
	f->family = 6;
	__builtin_memcpy(f->src, &ip6.saddr, 16);
	__builtin_memcpy(f->dst, &ip6.daddr, 16);
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
				f->protocol = nexthdr;
				return 0;
			}
			continue;
		}
		default:
			f->protocol = nexthdr;
			if (parse_l4(skb, off, f))
				return -1;
			if (f->bypass && ip6.hop_limit != 255)
				f->bypass = 0;
			return 0;
		}
	}
	return -1;
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
	__builtin_memcpy(key->src, f->src, 16);
	__builtin_memcpy(key->dst, f->dst, 16);
	key->id = f->frag_id;
	key->endpoint = endpoint;
	key->protocol = f->protocol;
	key->direction = direction;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 direction)
{
	struct sluice_ct_value *ct, new_ct = {};
	struct sluice_ct_key key = {}, rkey = {};
	const struct sluice_endpoint *ep;
	const struct sluice_config *cfg;
	__u32 zero = 0, ifindex = skb->ifindex;
	__u32 rule = 0, peer_class = 0;
	struct flow f = {};
	const __u8 *peer;
	enum sluice_drop_reason reason;
	int allowed, err;

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
	if (f.bypass)
		return TC_ACT_OK;

	if (!ep)
		return drop(skb, &f, ep, direction, 0, SLUICE_DROP_NO_ENDPOINT);
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

	/* Same direction as the flow's first packet. */
	__builtin_memcpy(key.src, f.src, 16);
	__builtin_memcpy(key.dst, f.dst, 16);
	key.sport = f.sport;
	key.dport = f.dport;
	key.endpoint = ep->id;
	key.protocol = f.protocol;
	key.direction = direction;
	ct = bpf_map_lookup_elem(&sluice_ct, &key);
	if (ct) {
		allowed = ct_established(&key, ct, ep, cfg, &rule);
		reason = SLUICE_DROP_POLICY_REVOKED;
	} else {
		/* A reply: the reversed tuple, first seen in the other direction. */
		__builtin_memcpy(rkey.src, f.dst, 16);
		__builtin_memcpy(rkey.dst, f.src, 16);
		rkey.sport = f.dport;
		rkey.dport = f.sport;
		rkey.endpoint = ep->id;
		rkey.protocol = f.protocol;
		rkey.direction = direction ^ 1;
		ct = bpf_map_lookup_elem(&sluice_ct, &rkey);
		if (ct) {
			allowed = ct_established(&rkey, ct, ep, cfg, &rule);
			reason = SLUICE_DROP_POLICY_REVOKED;
		} else {
			peer = direction == SLUICE_DIR_EGRESS ? f.dst : f.src;
			allowed = policy_allows(ep, direction, peer, f.protocol,
						bpf_ntohs(f.dport), &rule,
						&peer_class);
			reason = SLUICE_DROP_POLICY;
			if (allowed) {
				/* Tracked even when not isolated, so a later
				 * policy sees the flow the same way. */
				new_ct.revision = cfg->revision;
				new_ct.last_seen_ns = bpf_ktime_get_ns();
				new_ct.rule = rule;
				bpf_map_update_elem(&sluice_ct, &key, &new_ct,
						    BPF_ANY);
			}
		}
	}
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
