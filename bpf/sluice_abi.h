/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of every map key, map value and event record shared by the
 * tc programs (sluice_tc.bpf.c) and the C++ writer (policyd/datapath/bpf/).
 * Both sides include this file; the C++ side static_asserts the sizes, so a
 * layout change breaks the build instead of the datapath.
 *
 * Multi-byte fields of LPM keys are big-endian: an LPM trie matches a prefix of
 * the key's bytes, so the most significant byte of each field must come first
 * for "a shorter prefix" to mean "fewer significant bits".
 */
#ifndef SLUICE_BPF_SLUICE_ABI_H
#define SLUICE_BPF_SLUICE_ABI_H

#include <linux/types.h>

/* Map names; each map is pinned at <pin dir>/<name>. */
#define SLUICE_MAP_CLASSES "sluice_classes"
#define SLUICE_MAP_ENDPOINTS "sluice_endpoints"
#define SLUICE_MAP_POLICY "sluice_policy"
#define SLUICE_MAP_CONNTRACK "sluice_ct"
#define SLUICE_MAP_FRAGMENTS "sluice_frags"
#define SLUICE_MAP_RULE_COUNTERS "sluice_rule_stats"
#define SLUICE_MAP_DROP_COUNTERS "sluice_drop_stats"
#define SLUICE_MAP_DROP_EVENTS "sluice_drops"
#define SLUICE_MAP_CONFIG "sluice_config"
#define SLUICE_MAP_CT_COUNT "sluice_ct_count"
#define SLUICE_MAP_ENDPOINT_DROPS "sluice_ep_drops"

#define SLUICE_MAX_CLASS_PREFIXES 262144
#define SLUICE_MAX_ENDPOINTS 4096
#define SLUICE_MAX_POLICY_ENTRIES 1048576
#define SLUICE_MAX_CONNTRACK 262144
#define SLUICE_MAX_FRAGMENTS 8192
#define SLUICE_MAX_RULES 65536
/* Endpoints with tracked flows; room for ids whose endpoint was never detached. */
#define SLUICE_MAX_CT_COUNTS (2 * SLUICE_MAX_ENDPOINTS)
#define SLUICE_DROP_EVENTS_BYTES (1 << 20)

/* Reserved class ids (same values as compiler::kAnyPeer/kHostClass/kWorldClass). */
#define SLUICE_CLASS_ANY 0
#define SLUICE_CLASS_HOST 1
#define SLUICE_CLASS_WORLD 2

/* Directions, relative to the pod (same values as compiler::Direction). */
#define SLUICE_DIR_INGRESS 0
#define SLUICE_DIR_EGRESS 1

/* Rule ids that are not indexes into State::rules. */
#define SLUICE_RULE_NOT_ISOLATED 0xffffffffu /* == compiler::kNotIsolated */
#define SLUICE_RULE_HOST 0xfffffffeu         /* node -> pod, always allowed */

/*
 * Address -> peer class. One trie for both families, the family byte first:
 * IPv4 a.b.c.d/n is {4, a.b.c.d} with prefixlen 8 + n, IPv6 x/n is {6, x}
 * with prefixlen 8 + n. So an IPv6 prefix such as ::ffff:192.168.77.0/120
 * never matches an IPv4 packet (Kubernetes and the engine treat it as IPv6),
 * and ::ffff:0:0/96 and 0.0.0.0/0 are different keys.
 */
#define SLUICE_CLASS_PREFIX_FAMILY 8

struct sluice_class_key {
	__u32 prefixlen; /* host order, as the LPM trie requires */
	__u8 family;     /* 4 or 6 */
	__u8 addr[16];   /* IPv4 in the first 4 bytes, the rest zero */
	__u8 pad[3];     /* always zero; never part of a prefix */
};

/* ifindex of the host-side veth -> endpoint. */
#define SLUICE_EP_INGRESS_ISOLATED (1u << 0)
#define SLUICE_EP_EGRESS_ISOLATED (1u << 1)
#define SLUICE_EP_POLICY_READY (1u << 2)
/* An audit-mode policy selects the endpoint: its new flows are reported as
 * flow events (verdict allowed) whatever SLUICE_CONFIG_LOG_ALLOWED says, so the
 * daemon can log what the audited policy would deny. */
#define SLUICE_EP_AUDITED (1u << 3)

/*
 * The pod's own addresses (Kubernetes allows one per family): a packet
 * leaving the pod with any other source is dropped as spoofed, and a family
 * the pod has no address of cannot be sent at all.
 */
struct sluice_endpoint {
	__u32 id;
	__u32 flags; /* SLUICE_EP_* */
	__u8 has_ipv4;
	__u8 has_ipv6;
	__u8 pad[2];
	__u8 ipv4[4];
	__u8 ipv6[16];
};

/*
 * Allow set of every endpoint. The data bytes are ordered so that what a rule
 * may leave open comes last: a rule without ports ends before the protocol
 * (any protocol), a rule with a protocol but all ports ends before the port,
 * and a port range is a set of aligned power-of-two port blocks, each a prefix
 * of the port. The peer class sits in the middle and is never a prefix: the
 * datapath looks up the packet's class and then kAnyPeer.
 */
struct sluice_policy_key {
	__u32 prefixlen; /* host order; SLUICE_POLICY_FULL_PREFIX for a packet */
	__be32 endpoint;
	__u8 direction;
	__u8 pad0[3]; /* always zero; part of the matched prefix */
	__be32 peer_class;
	__u8 protocol;
	__u8 pad1;    /* always zero; part of the matched prefix when a port is */
	__be16 port;
};

#define SLUICE_POLICY_PREFIX_PEER 96 /* endpoint, direction + pad, class */
#define SLUICE_POLICY_PREFIX_PROTO 104
#define SLUICE_POLICY_PREFIX_PORT 112 /* + n port bits */
#define SLUICE_POLICY_FULL_PREFIX 128

struct sluice_policy_value {
	__u32 rule; /* RuleId credited for the match */
};

/*
 * Conntrack, keyed in the orientation of the flow's first packet as seen by
 * the endpoint in `direction`. Ports are 0 for protocols without ports; for
 * ICMP echo both hold the echo identifier. Addresses are 16 bytes (IPv4 as
 * ::ffff:a.b.c.d) and `family` keeps an IPv4 flow apart from an IPv6 flow
 * between v4-mapped addresses.
 */
struct sluice_ct_key {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u32 endpoint;
	__u8 protocol;
	__u8 direction;
	__u8 family; /* 4 or 6 */
	__u8 pad;
};

/* TCP state of a tracked flow; other protocols stay SLUICE_CT_OTHER. */
enum sluice_ct_state {
	SLUICE_CT_OTHER = 0,
	SLUICE_CT_TCP_SYN = 1,         /* SYN seen, no reply yet */
	SLUICE_CT_TCP_ESTABLISHED = 2, /* reply seen (or picked up mid-stream) */
	SLUICE_CT_TCP_CLOSING = 3,     /* FIN seen */
	SLUICE_CT_TCP_CLOSED = 4,      /* RST seen */
};

struct sluice_ct_value {
	__u64 revision; /* policy revision the flow was last checked against */
	__u64 last_seen_ns;
	__u32 rule;
	__u8 state;     /* enum sluice_ct_state */
	__u8 host_peer; /* the peer is the node (class HOST) */
	__u8 pad[2];
};

/*
 * Fragments: the first fragment's verdict, so later fragments (which carry no
 * L4 header) get the same one. IPv4 ids are 16 bits, IPv6 ids 32.
 */
struct sluice_frag_key {
	__u8 src[16];
	__u8 dst[16];
	__u32 id;
	__u32 endpoint;
	__u8 protocol;
	__u8 direction;
	__u8 family; /* 4 or 6 */
	__u8 pad;
};

struct sluice_frag_value {
	__u32 rule;
	__u8 allowed;
	__u8 pad[3];
};

struct sluice_counter {
	__u64 packets;
	__u64 bytes;
};

/* Index into the drop counters and `reason` of a drop event. */
enum sluice_drop_reason {
	SLUICE_DROP_NONE = 0,
	SLUICE_DROP_NO_ENDPOINT = 1,     /* ifindex not in the endpoint map */
	SLUICE_DROP_NOT_READY = 2,       /* endpoint policy not applied yet */
	SLUICE_DROP_POLICY = 3,          /* no allow entry matched */
	SLUICE_DROP_POLICY_REVOKED = 4,  /* established flow denied after a policy change */
	SLUICE_DROP_FRAG_NO_FIRST = 5,   /* later fragment without a first fragment */
	SLUICE_DROP_FRAG_DENIED = 6,     /* later fragment of a denied first fragment */
	SLUICE_DROP_MALFORMED = 7,       /* truncated headers */
	SLUICE_DROP_UNSUPPORTED_L3 = 8,  /* neither IPv4, IPv6 nor ARP */
	SLUICE_DROP_EVENTS_LOST = 9,     /* counter only: ring buffer full */
	SLUICE_DROP_SPOOFED = 10,        /* source not the pod's, or a forwarded node source */
	SLUICE_DROP_ICMP_UNRELATED = 11, /* ICMP error quoting no tracked flow */
	SLUICE_DROP_ND_INVALID = 12,     /* IPv6 ND off the link (hop limit, addresses) */
	SLUICE_DROP_CT_FULL = 13,        /* new flow, but conntrack table or quota full */
	SLUICE_DROP_REASON_MAX = 14,
};

/* Verdict of a flow event. */
#define SLUICE_VERDICT_DENIED 0
#define SLUICE_VERDICT_ALLOWED 1

/*
 * A flow event in the ring buffer: a dropped packet (verdict DENIED, `reason`
 * says why), or the first packet of a newly tracked flow (verdict ALLOWED,
 * `reason` NONE, `rule` the RuleId that admitted it) when allowed flows are
 * reported (SLUICE_CONFIG_LOG_ALLOWED, or an endpoint with SLUICE_EP_AUDITED).
 */
struct sluice_drop_event {
	__u64 timestamp_ns; /* bpf_ktime_get_ns() */
	__u32 endpoint;
	__u32 ifindex;
	__u8 src[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u32 peer_class;
	__u8 protocol;
	__u8 direction;
	__u8 reason; /* enum sluice_drop_reason */
	__u8 family; /* 4 or 6 */
	__u8 verdict; /* SLUICE_VERDICT_* */
	__u8 pad[3];
	__u32 rule; /* allowed flows: the admitting RuleId */
	__u32 pad2;
};

/*
 * Policy drops (reasons POLICY and POLICY_REVOKED) per endpoint and direction,
 * so the daemon can count denials per policy: it credits each to every policy
 * isolating that endpoint in that direction.
 */
struct sluice_endpoint_drop_key {
	__u32 endpoint;
	__u8 direction;
	__u8 pad[3]; /* always zero */
};

#define SLUICE_CONFIG_ESTABLISHED_KEEP (1u << 0)
/* Report the first packet of every newly tracked flow as a flow event. */
#define SLUICE_CONFIG_LOG_ALLOWED (1u << 1)

struct sluice_config {
	__u64 revision; /* bumped by the writer on every change to classes or policy */
	__u32 flags;    /* SLUICE_CONFIG_* */
	/* Tracked flows one endpoint may hold; 0 = no quota below the table size. */
	__u32 ct_quota;
	/* Idle timeouts of tracked flows, in seconds, by state. */
	__u32 ct_tcp_syn_s;
	__u32 ct_tcp_established_s;
	__u32 ct_tcp_closing_s; /* after a FIN */
	__u32 ct_tcp_closed_s;  /* after a RST */
	__u32 ct_other_s;       /* UDP, SCTP, ICMP echo, any other protocol */
	__u32 pad;
};

#endif /* SLUICE_BPF_SLUICE_ABI_H */
